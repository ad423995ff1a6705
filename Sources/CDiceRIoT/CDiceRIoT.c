// A batch of P-256 base-point multiplications with one affine conversion.
//
// Why: a certificate needs two public keys, d·G, and BoringSSL turns each result
// from Jacobian to affine coordinates with a field inversion (an addition chain of
// ~255 squarings): a third of the curve's time per key. Montgomery's trick inverts
// the product of all the Z coordinates once and recovers each Z⁻¹ with three
// multiplications. BoringSSL has that routine (ec_jacobian_to_affine_batch) but not
// for its P-256 method, and no public API hands out Jacobian coordinates, so this
// file calls the library's internal EC functions, declared below as its
// crypto/fipsmodule/ec/internal.h defines them. All arithmetic stays BoringSSL's.
// explicit_bzero (glibc 2.25+).
#define _DEFAULT_SOURCE
#include "CDiceRIoT.h"

#include <stdlib.h>
#include <string.h>

// BoringSSL's EC_FELEM, EC_SCALAR, EC_JACOBIAN and EC_AFFINE on a 64-bit target:
// EC_MAX_WORDS = ceil(66 / 8) = 9 words (66 bytes: the largest field it supports);
// P-256 uses the first 4. Field elements are in the Montgomery form of the group.
typedef struct { uint64_t words[9]; } felem;
typedef struct { uint64_t words[9]; } scalar;
typedef struct { felem X, Y, Z; } jacobian;
typedef struct { felem X, Y; } affine;

int CCryptoBoringSSL_ec_scalar_from_bytes(const struct ec_group_st *group, scalar *out, const uint8_t *in, size_t len);
int CCryptoBoringSSL_ec_point_mul_scalar_base(const struct ec_group_st *group, jacobian *r, const scalar *s);
int CCryptoBoringSSL_ec_jacobian_to_affine(const struct ec_group_st *group, affine *out, const jacobian *p);
const felem *CCryptoBoringSSL_ec_felem_one(const struct ec_group_st *group);
void CCryptoBoringSSL_ec_GFp_mont_felem_mul(const struct ec_group_st *group, felem *r, const felem *a, const felem *b);
void CCryptoBoringSSL_ec_felem_to_bytes(const struct ec_group_st *group, uint8_t *out, size_t *out_len, const felem *in);

static void mul(const struct ec_group_st *group, felem *r, const felem *a, const felem *b) {
    CCryptoBoringSSL_ec_GFp_mont_felem_mul(group, r, a, b);
}

int CDiceRIoT_p256_public_points(const struct ec_group_st *group, const uint8_t *scalars, size_t count,
                                 uint8_t *out) {
    if (count == 0) return 1;
    jacobian *points = calloc(count, sizeof *points);
    // prefix[i] = Z0·Z1·…·Zi
    felem *prefix = calloc(count, sizeof *prefix);
    int ok = 0;
    if (points == NULL || prefix == NULL) goto done;
    for (size_t i = 0; i < count; i++) {
        scalar d;
        int made = CCryptoBoringSSL_ec_scalar_from_bytes(group, &d, scalars + 32 * i, 32)
            && CCryptoBoringSSL_ec_point_mul_scalar_base(group, &points[i], &d);
        explicit_bzero(&d, sizeof d);  // key material
        if (!made) goto done;
        if (i == 0) {
            prefix[0] = points[0].Z;
        } else {
            mul(group, &prefix[i], &prefix[i - 1], &points[i].Z);
        }
    }
    // The one inversion, by BoringSSL's own affine conversion of the point
    // (1, 1, P) with P the product: it gives x = P⁻², so P⁻¹ = P·x. It fails only
    // when P = 0, i.e. some d·G was the point at infinity (d = 0 mod n).
    const felem *one = CCryptoBoringSSL_ec_felem_one(group);
    jacobian product = {*one, *one, prefix[count - 1]};
    affine inverse;
    if (!CCryptoBoringSSL_ec_jacobian_to_affine(group, &inverse, &product)) goto done;
    felem zinvprod;  // (Z0·…·Zi)⁻¹ for the i below
    mul(group, &zinvprod, &prefix[count - 1], &inverse.X);
    for (size_t i = count; i-- > 0;) {
        felem zinv, zinv2, x, y;
        if (i == 0) {
            zinv = zinvprod;
        } else {
            mul(group, &zinv, &zinvprod, &prefix[i - 1]);
            mul(group, &zinvprod, &zinvprod, &points[i].Z);
        }
        mul(group, &zinv2, &zinv, &zinv);
        mul(group, &x, &points[i].X, &zinv2);
        mul(group, &y, &points[i].Y, &zinv2);
        mul(group, &y, &y, &zinv);
        uint8_t *point = out + 65 * i;
        point[0] = 0x04;
        size_t xLength = 0, yLength = 0;
        CCryptoBoringSSL_ec_felem_to_bytes(group, point + 1, &xLength, &x);
        CCryptoBoringSSL_ec_felem_to_bytes(group, point + 33, &yLength, &y);
        if (xLength != 32 || yLength != 32) goto done;
    }
    ok = 1;
done:
    // The Jacobian points and products are functions of the private scalars.
    if (points != NULL) explicit_bzero(points, count * sizeof *points);
    if (prefix != NULL) explicit_bzero(prefix, count * sizeof *prefix);
    free(points);
    free(prefix);
    return ok;
}
