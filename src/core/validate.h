/*
 * validate.h - checks on the text users give: names, environments, emails.
 *
 * Each check returns KW_OK or KW_ERR_INVALID with a sentence naming the
 * field in *err. Nothing here allocates but the metadata check, which
 * parses with jansson and frees what it parsed.
 */
#ifndef KW_VALIDATE_H
#define KW_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/model.h"
#include "core/status.h"

/* true when the n bytes at s are well-formed UTF-8 (no overlongs, no surrogates). */
bool kw_utf8_valid(const char *s, size_t n);

/*
 * Checks a display name (of a key, account or root key) and writes it to
 * out, trimmed of surrounding blanks (Unicode White_Space and U+2800). It
 * must be valid UTF-8 of 1 to 100 characters after trimming, none of them a
 * control, format (Cf) or other default-ignorable character, a line or
 * paragraph separator or a noncharacter: nothing invisible can make one
 * name pass for another. `field` names it in the message, which also names
 * the first refused character (U+XXXX).
 */
kw_status kw_validate_name(const char *in, const char *field, char out[KW_NAME_BUFSZ],
                           kw_error *err);

/* Checks an environment label: [a-z][a-z0-9]{0,15}, and not the reserved "root". */
kw_status kw_validate_environment(const char *env, kw_error *err);

/* Checks an email address (a plain local@domain) and writes it lower-cased to out. */
kw_status kw_validate_email(const char *in, char out[KW_EMAIL_BUFSZ], kw_error *err);

/* Checks an id of the given kind ("acc", "key", "usr", "rk") as a path parameter. */
kw_status kw_validate_id(const char *id, const char *kind, const char *field, kw_error *err);

/*
 * Checks a key's metadata, given as JSON text: an object of at most
 * KW_METADATA_MEMBERS members named [a-z][a-z0-9_]{0,31}, each a string,
 * a number or a boolean (no null, array or object), at most
 * KW_METADATA_MAX bytes once serialized compactly. Writes that compact
 * form, members in their given order, to out. The message names the
 * member at fault.
 */
kw_status kw_validate_metadata(const char *text, char out[KW_METADATA_BUFSZ], kw_error *err);

#endif
