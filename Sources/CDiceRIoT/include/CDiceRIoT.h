#ifndef CDICERIOT_H
#define CDICERIOT_H

#include <stddef.h>
#include <stdint.h>

/// BoringSSL's EC_GROUP (opaque here, as in its public headers).
struct ec_group_st;

/// d·G for `count` P-256 scalars (32 bytes each, big-endian, each 0 < d < n: the
/// caller checks) into `out` (65 bytes each: 04 || X || Y), through the BoringSSL that
/// swift-crypto links, with one field inversion for all of them instead of one per
/// point. Returns 1, or 0 with `out` unspecified.
///
/// `group` is CCryptoBoringSSL_EC_group_p256(). Call only when
/// `CDiceRIoT_layout_matches(group)`; the Swift caller also checks the points once
/// against swift-crypto's public API.
int CDiceRIoT_p256_public_points(const struct ec_group_st *group, const uint8_t *scalars, size_t count,
                                 uint8_t *out);

/// 1 when the structures this file declares have the size and form BoringSSL uses
/// (checked on the group's own data before any internal function writes into one of
/// them), else 0: then `CDiceRIoT_p256_public_points` must not be called.
int CDiceRIoT_layout_matches(const struct ec_group_st *group);

#endif
