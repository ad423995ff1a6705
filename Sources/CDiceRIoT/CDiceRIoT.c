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
// P-256 uses the first 4. Field elements are in the Montgomery form of the group
// (both of BoringSSL's P-256 methods use ec_GFp_mont_felem_mul, R = 2^256).
// A BoringSSL whose structures differ would write past these: CDiceRIoT_layout_matches
// checks them on the group's own data first.
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
// Public API.
const void *CCryptoBoringSSL_EC_GROUP_get0_generator(const struct ec_group_st *group);
void CCryptoBoringSSL_ERR_clear_error(void);

int CDiceRIoT_layout_matches(const struct ec_group_st *group) {
#if defined(__x86_64__) || defined(__aarch64__)
    // ec_felem_one is &group->generator.raw.Z, and EC_GROUP_get0_generator is
    // &group->generator, an EC_POINT {EC_GROUP *group; EC_JACOBIAN raw}: the distance
    // between them is a pointer and two field elements exactly when EC_FELEM is ours.
    const char *generator = CCryptoBoringSSL_EC_GROUP_get0_generator(group);
    const felem *one = CCryptoBoringSSL_ec_felem_one(group);
    if (generator == NULL || (const char *)one - generator != (ptrdiff_t)(sizeof(void *) + 2 * sizeof(felem))) return 0;
    // One in Montgomery form, R mod p, in 64-bit limbs, the unused words zero.
    static const uint64_t r[9] = {1, 0xffffffff00000000u, 0xffffffffffffffffu, 0xfffffffeu, 0, 0, 0, 0, 0};
    return memcmp(one->words, r, sizeof r) == 0;
#else
    (void)group;
    return 0;
#endif
}

static void mul(const struct ec_group_st *group, felem *r, const felem *a, const felem *b) {
    CCryptoBoringSSL_ec_GFp_mont_felem_mul(group, r, a, b);
}

int CDiceRIoT_p256_public_points(const struct ec_group_st *group, const uint8_t *scalars, size_t count,
                                 uint8_t *out) {
    if (count == 0) return 1;
    jacobian *points = calloc(count, sizeof *points);
    // prefix[i] = Z0·Z1·…·Zi
    felem *prefix = calloc(count, sizeof *prefix);
    // Functions of the private scalars, wiped at the end like the arrays.
    jacobian product;
    affine inverse;
    felem zinvprod, zinv, zinv2, x, y;
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
    product.X = *one;
    product.Y = *one;
    product.Z = prefix[count - 1];
    if (!CCryptoBoringSSL_ec_jacobian_to_affine(group, &inverse, &product)) goto done;
    // (Z0·…·Zi)⁻¹ for the i below
    mul(group, &zinvprod, &prefix[count - 1], &inverse.X);
    for (size_t i = count; i-- > 0;) {
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
    explicit_bzero(&product, sizeof product);
    explicit_bzero(&inverse, sizeof inverse);
    explicit_bzero(&zinvprod, sizeof zinvprod);
    explicit_bzero(&zinv, sizeof zinv);
    explicit_bzero(&zinv2, sizeof zinv2);
    explicit_bzero(&x, sizeof x);
    explicit_bzero(&y, sizeof y);
    // A failure (a fault, or a scalar the caller should have refused) leaves BoringSSL
    // errors on this thread's queue, where a later swift-crypto call would find them.
    if (!ok) CCryptoBoringSSL_ERR_clear_error();
    return ok;
}
