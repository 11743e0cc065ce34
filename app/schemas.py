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
        {"text": "Great screen. The battery dies by noon, though.", "sentences": True},
    ]})

    text: Text | None = None
    texts: Annotated[list[Text], Field(min_length=1, max_length=settings.max_batch_size,
                                       description=f"1 to {settings.max_batch_size} reviews")] | None = None
    sentences: bool = Field(default=False, description="also answer sentence by sentence (`sentences` in each "
                                                       "result): offsets, label, score and sentiment of each")

    @model_validator(mode="after")
    def exactly_one(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


Sentiment = Literal["POSITIVE", "NEGATIVE", "NEUTRAL", "MIXED"]


class SentenceResult(BaseModel):
    start: int = Field(ge=0, description="offset of the sentence's first character in the text (Python string index, "
                                         "i.e. Unicode code points)")
    end: int = Field(ge=0, description="offset just past its last character: text[start:end] is the sentence")
    label: str = Field(description="the binary label of the sentence alone", examples=["NEGATIVE"])
    score: float = Field(ge=0, le=1, description="probability of `label`")
    sentiment: Sentiment = Field(description="four-way sentiment of the sentence (MIXED: it holds a clearly positive "
                                             "and a clearly negative clause)")
    sentiment_scores: dict[str, float] = Field(description="the four sentiments' scores, summing to 1")


class Result(BaseModel):
    label: str = Field(description="the most probable label", examples=["POSITIVE"])
    score: float = Field(ge=0, le=1, description="probability of `label`")
    scores: dict[str, float] = Field(description="probability of every label")
    truncated: bool = Field(description="the text was longer than the model's max_length tokens: its start and its end "
                                        "were read, not what lies between")
    sentiment: Sentiment | None = Field(
        default=None, description="POSITIVE, NEGATIVE, NEUTRAL (neither: a 3-star kind of review) or MIXED (clearly "
                                  "positive and clearly negative parts), as Amazon Comprehend answers; absent for a "
                                  "model without a star head", examples=["MIXED"])
    sentiment_scores: dict[str, float] | None = Field(default=None, description="the four sentiments' scores, summing "
                                                                               "to 1; `sentiment` is the largest")
    stars: float | None = Field(default=None, ge=1, le=5, description="expected star rating, 1.0 to 5.0",
                                examples=[3.4])
    star_scores: dict[str, float] | None = Field(default=None, description="probability of each rating \"1\" to "
                                                                         "\"5\" stars")
    sentences: list[SentenceResult] | None = Field(default=None, description="with `\"sentences\": true` only: one "
                                                                            "result per sentence, in order")


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
