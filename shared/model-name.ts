/**
 * The one rule for a model name, used by the training request's schema, the OpenAPI documents and the
 * model repository. A name is a repository folder, the tail of `classify.<name>` and `infer.<name>`,
 * and a dot-separated part of `models.fetch.<name>.<version>.<sha256>`, so it has no dots and does
 * not start with `-` or `_`: a letter or digit, then up to 63 letters, digits, `_` or `-`.
 */
export const MODEL_NAME_RULE = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';

/** {@link MODEL_NAME_RULE} as a RegExp. */
export const MODEL_NAME_PATTERN = new RegExp(MODEL_NAME_RULE);

/** What a refused name should have been, for error messages. */
export const MODEL_NAME_HINT = 'a letter or digit, then up to 63 letters, digits, _ or -';
