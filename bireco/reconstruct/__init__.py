"""Read an embedding back as text: decode the other side of a pair from one side's embedding, and score it.

`generate` decodes (the embedding as the first input vector, laid out exactly as Stage I trains), `score` holds
the token-level F1 and the teacher-forced loss, `reconstructor` ties encoder, decoding and scoring together, and
`cli` is `bireco-reconstruct`.
"""
