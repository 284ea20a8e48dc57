# The lmforge inference server (CPU).
#
#   docker build -t lmforge-serve .
#   # SageMaker (the default command): model artifacts in /opt/ml/model, port 8080
#   docker run -p 8080:8080 -v "$PWD/runs/quickstart:/opt/ml/model:ro" lmforge-serve
#   # OpenAI-compatible server on port 8000 with an API key
#   docker run -p 8000:8000 -v "$PWD/runs/quickstart:/model:ro" -e LMFORGE_API_KEY=change-me \
#       --entrypoint lmforge lmforge-serve serve /model --host 0.0.0.0 --port 8000
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LMFORGE_NO_PROGRESS=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# The CPU build of torch first: the default wheel on PyPI pulls in several GB of CUDA.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --create-home --uid 1000 lmforge

USER lmforge
EXPOSE 8080 8000
# SageMaker starts the container as `docker run IMAGE serve`; the extra argument is ignored here.
ENTRYPOINT ["python", "-c", "from lmforge.serve.app import serve; serve(sagemaker_mode=True)"]
