"""`nerv-rt serve`: generation as a Ray Serve application (extra `[serve]`).

request.py parses and checks a request (no Ray), app.py is the deployment (batching with `@serve.batch`) and
its application builder, run.py starts Ray and serves until Ctrl-C. Scale-out is Ray's: more replicas,
autoscaling, or a Ray cluster (`serve deploy nerv_rt/serve/serve_config.yaml`, shipped with the package).
"""
