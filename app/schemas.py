"""Request and response models; the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.settings import settings


def _not_blank(value: str) -> str:
    # Python's notion of whitespace (it also counts separators such as U+001F, which regex \s does not)
    if not value.strip():
        raise ValueError("must contain at least one non-whitespace character")
    return value


Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=settings.max_text_chars, pattern=r"\S"),
    AfterValidator(_not_blank),
    Field(description=f"A review, 1 to {settings.max_text_chars} characters, not only whitespace.",
          examples=["Works great, setup took two minutes."]),
]


class PredictRequest(BaseModel):
    """Exactly one of ``text`` (one review) or ``texts`` (a batch)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Works great, setup took two minutes."},
        {"texts": ["Love it.", "Broke after a day."]},
    ]})

    text: Text | None = None
    texts: Annotated[list[Text], Field(min_length=1, max_length=settings.max_batch_size,
                                       description=f"1 to {settings.max_batch_size} reviews")] | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class Result(BaseModel):
    label: str = Field(description="the most probable label", examples=["POSITIVE"])
    score: float = Field(ge=0, le=1, description="probability of `label`")
    scores: dict[str, float] = Field(description="probability of every label")
    truncated: bool = Field(description="the text was longer than the model's max_length tokens: its start and its end "
                                        "were read, not what lies between")


class ModelInfo(BaseModel):
    name: str
    version: str = Field(description="changes whenever the weights change")
    backend: Literal["tflite", "savedmodel"]


class PredictResponse(BaseModel):
    results: list[Result] = Field(description="one per input text, in input order")
    model: ModelInfo


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model: ModelInfo
    labels: list[str]
    max_length: int


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str
    type: str | None = None


class ErrorBody(BaseModel):
    code: str = Field(examples=["validation_error"])
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
