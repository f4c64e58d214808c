"""`nerv-rt bench`: the paper's efficiency table (decoder, generator, scaling) measured on this machine."""
