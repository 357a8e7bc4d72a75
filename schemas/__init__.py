"""The pipeline's public contract as code: event and roster models, the decoder, JSON Schema, examples, DDL."""
