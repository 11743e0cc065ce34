# Local-only layer on the stand-in: this machine's CA bundle, so that pip inside `docker build` reaches
# the package index here. It is never part of the project's Dockerfile, nor of any image built on the
# real base (which brings its own CA bundle).
# hadolint ignore=DL3006
FROM sentiment-standin-base:3.12
COPY ca-certificates.crt /etc/ssl/certs/sentiment-build-ca.crt
ENV PIP_CERT=/etc/ssl/certs/sentiment-build-ca.crt
LABEL org.sentiment.standin.ca-layer="local build CA bundle, not shipped"
