# A local S3 for tests/image/test_batch_image.py: moto's server on the same base as the function image, so it
# builds wherever the function image does. A test host only: never shipped, published on 127.0.0.1 only.
# hadolint ignore=DL3006
FROM public.ecr.aws/lambda/python:3.12
RUN pip install --no-cache-dir "moto[s3,server]==5.2.5" "flask==3.1.3" "flask-cors==6.0.5"
EXPOSE 5000
ENTRYPOINT ["/var/lang/bin/python3.12", "-m", "moto.server", "-H", "0.0.0.0", "-p", "5000"]
