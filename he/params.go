package he

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// Parameter set (the only one this version supports).
//
//	LogN            14             (N = 16384, 8192 complex slots, used as real slots)
//	LogQ            [60, 45 x 7]   (8 primes; levels 7..0)
//	LogP            [61]           (one special prime for key switching)
//	LogQP           436            (<= 438, the HomomorphicEncryption.org
//	                                standard bound for N = 2^14, uniform
//	                                ternary secret, sigma = 3.2, 128-bit
//	                                classical security)
//	Default scale   2^45
//	Secret / error  lattigo defaults: uniform ternary secret, discrete
//	                Gaussian error sigma = 3.2 bounded at 6 sigma
//
// Level budget (top level 7):
//
//	7 -> 6  plaintext-ciphertext multiply-add of the features by the
//	        encrypted weights, then one rescale
//	6 -> 1  Chebyshev approximation of the sigmoid, degree <= 31 (5 levels)
//	1       output level: the running totals, the rotations of the per-group
//	        sum, AddNoise and Flood happen here; Q0*q1 ~ 2^105 leaves room
//	        for sums up to 2^58 at scale 2^45 plus the flooding noise
//	0       margin (never consumed)
//
// The masking multiply the design allowed for is not needed: the sigmoid is
// evaluated as 0.5 + q(t) with q odd, so an empty slot (t = 0) yields
// q(0) = 0 exactly and the 0.5 per real row is added in the clear from the
// group counts.
const (
	logN            = 14
	logDefaultScale = 45
	topLevel        = 7 // level of the logistic model ciphertexts
	polyLevel       = 6 // level at which the sigmoid evaluation starts
	outLevel        = 1 // level of every output ciphertext
	linearLevel     = 2 // level of the linear model ciphertexts
	maxPolyDepth    = 5 // polyLevel - outLevel
)

var paramsLiteral = hefloat.ParametersLiteral{
	LogN:            logN,
	LogQ:            []int{60, 45, 45, 45, 45, 45, 45, 45},
	LogP:            []int{61},
	LogDefaultScale: logDefaultScale,
	RingType:        ring.Standard,
}

var (
	paramsOnce  sync.Once
	paramsValue hefloat.Parameters
	paramsFP    [32]byte
	paramsErr   error
)

// Parameters returns the CKKS parameter set used by every Veil HE blob (see
// the table above) and its fingerprint, the SHA-256 of lattigo's binary
// encoding of the parameters.
func Parameters() (hefloat.Parameters, [32]byte, error) {
	paramsOnce.Do(func() {
		paramsValue, paramsErr = hefloat.NewParametersFromLiteral(paramsLiteral)
		if paramsErr != nil {
			paramsErr = fmt.Errorf("he: building the CKKS parameters failed (a bug in this package): %w", paramsErr)
			return
		}
		var b []byte
		if b, paramsErr = paramsValue.MarshalBinary(); paramsErr != nil {
			paramsErr = fmt.Errorf("he: encoding the CKKS parameters failed (a bug in this package): %w", paramsErr)
			return
		}
		paramsFP = sha256.Sum256(b)
	})
	return paramsValue, paramsFP, paramsErr
}

// Fingerprint returns the short hexadecimal fingerprint of the parameter set,
// as printed in error messages.
func Fingerprint() (string, error) {
	_, fp, err := Parameters()
	if err != nil {
		return "", err
	}
	return shortHex(fp), nil
}

func shortHex(fp [32]byte) string { return hex.EncodeToString(fp[:8]) }
