"""`python -m nerv_rt ...`: the same command line as `nerv-rt ...`."""
from .cli import app

app(prog_name="nerv-rt")
