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
/// `group` is CCryptoBoringSSL_EC_group_p256(); the points are only correct where
/// that group runs on BoringSSL's Montgomery-form P-256 (nistz256: x86_64, aarch64),
/// which the Swift caller checks once against the public API.
int CDiceRIoT_p256_public_points(const struct ec_group_st *group, const uint8_t *scalars, size_t count,
                                 uint8_t *out);

#endif
