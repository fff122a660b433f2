"""A real S3-compatible server on 127.0.0.1 (moto's, from PyPI) for the checkpoint-storage tests."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def s3_server():
    """Yield a function bucket_prefix -> s3:// URI of the running server (AWS test credentials in os.environ)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    try:
        yield lambda path: (f"s3://{path}?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
                            "&allow_bucket_creation=true")
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
