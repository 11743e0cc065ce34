# Container-image Lambda for sentiment inference.
#   docker build --build-arg BACKEND=tflite -t sentiment .      (default: LiteRT, small and fast to start)
#   docker build --build-arg BACKEND=savedmodel -t sentiment .  (TensorFlow SavedModel)
ARG BACKEND=tflite

# Stage 1: keep only the artifact files the chosen backend reads.
FROM public.ecr.aws/lambda/python:3.12 AS artifacts
ARG BACKEND
COPY model_artifacts/ /staging/
RUN if [ "$BACKEND" = "tflite" ]; then rm -rf /staging/saved_model; \
    elif [ "$BACKEND" = "savedmodel" ]; then rm -f /staging/model.tflite; \
    else echo "BACKEND must be tflite or savedmodel, got '$BACKEND'" >&2; exit 1; fi \
 && rm -rf /staging/*.png /staging/*.md /staging/pytorch

# Stage 2: the function image.
FROM public.ecr.aws/lambda/python:3.12
ARG BACKEND
# requirements/lock/<backend>.txt: app.txt + backend-${BACKEND}.txt resolved with every transitive
# dependency, pinned with hashes (make lock); wheels only, so the image installs what the lock tested.
COPY requirements/lock/${BACKEND}.txt ${LAMBDA_TASK_ROOT}/requirements/lock.txt
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r "${LAMBDA_TASK_ROOT}/requirements/lock.txt"
COPY --from=artifacts /staging/ /opt/ml/model/
COPY app/ ${LAMBDA_TASK_ROOT}/app/
ENV MODEL_DIR=/opt/ml/model \
    MODEL_BACKEND=${BACKEND} \
    POWERTOOLS_SERVICE_NAME=sentiment \
    TF_CPP_MIN_LOG_LEVEL=2
# The HTTP API's entry point; the bulk-scoring function runs the same image with
# app.batch.lambda_handler (template.yaml: ImageConfig.Command).
CMD ["app.handler.lambda_handler"]
