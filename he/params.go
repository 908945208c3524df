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
//	LogN            14             (N = 16384)
//	Ring            conjugate-invariant, Z[X+X^-1]/(X^2N+1): N = 16384
//	                real slots, twice the standard ring's N/2 complex ones,
//	                at the same cost per operation (Kim, Song, "Approximate
//	                homomorphic encryption over the conjugate-invariant
//	                ring", ePrint 2018/952; lattigo ring.ConjugateInvariant).
//	                A row needs one real slot, so a ciphertext carries twice
//	                the rows; a crafted ciphertext has no imaginary parts to
//	                hide a second value in.
//	LogQ            [50, 46 x 7]   (8 primes; levels 7..0)
//	LogP            [61, 50]       (special primes for key switching)
//	Key moduli      the public key and the Galois keys modulo Q7*p0 (433
//	                bits), the relinearization key modulo Q6*p0*p1 (437
//	                bits); ciphertexts modulo Q7 (372). Every RLWE sample is
//	                within 438 bits, the HomomorphicEncryption.org standard
//	                bound for dimension 2^14, uniform ternary secret,
//	                sigma = 3.2, 128-bit classical security (the
//	                conjugate-invariant ring of degree N is a lattice of
//	                dimension N; ePrint 2018/952 sec. 3 sizes it by the same
//	                table). No key uses the whole QP (484 bits); keys.go
//	                makes them, TestKeyModuliWithinBound checks them.
//	Default scale   2^46: one bit more than the standard ring allowed, taken
//	                from Q0 (level 0 only bounds the outputs, and 2^50 leaves
//	                room), which pays for the real slots: a coefficient error
//	                e shows in a real slot as e*sqrt(2N), twice the real part
//	                of a complex slot's e*sqrt(N/2).
//	Secret / error  lattigo defaults: uniform ternary secret, discrete
//	                Gaussian error sigma = 3.2 bounded at 6 sigma
//
// Level budget (top level 7):
//
//	7       the platform averages every encrypted weight and the bias over
//	        its lane with rotations (see Scorer): no level consumed
//	7 -> 6  plaintext-ciphertext multiply-add of the features by the
//	        averaged weights, then one rescale
//	6 -> 1  Chebyshev approximation of the sigmoid, degree <= 31 (5 levels)
//	1       logistic output level: the running totals, the rotations of the
//	        per-group sum, AddNoise and Flood happen here, at scale 2^55;
//	        Q0*q1 ~ 2^96 leaves room for sums up to 2^40 plus the flooding
//	        noise
//	0       margin (never consumed)
//
// A linear model is encrypted at level 3 and scale 2^60 and its sums come out
// at level 2 (Q0*q1*q2 ~ 2^142), where they can reach 2^81.
//
// The masking multiply the design allowed for is not needed: the sigmoid is
// evaluated as 0.5 + q(t) with q odd, so an empty slot (t = 0) yields
// q(0) = 0 exactly and the 0.5 per real row is added in the clear from the
// group counts. For the same reason the lane average costs no level: the
// sum of a lane's slots is reinterpreted at a scale that many times larger
// (a power of two), and the feature plaintexts are encoded at Q7 divided by
// it, so the product lands on the default scale after the usual rescale.
const (
	logN            = 14
	logDefaultScale = 46
	topLevel        = 7 // level of the logistic model ciphertexts and of the rotation keys
	polyLevel       = 6 // level at which the sigmoid evaluation starts
	outLevel        = 1 // level of the logistic output
	linearLevel     = 3 // level of the linear model ciphertexts
	linearOutLevel  = 2 // level of the linear output
	maxPolyDepth    = 5 // polyLevel - outLevel
	// logisticOutLogScale is the scale the sigmoid lands at. Above the default scale, the
	// last rescales' roundings weigh less against the sums (about a quarter of the
	// evaluation noise, measured), and so does the flooding sized on that noise.
	logisticOutLogScale = 55
)

var paramsLiteral = hefloat.ParametersLiteral{
	LogN:            logN,
	LogQ:            []int{50, 46, 46, 46, 46, 46, 46, 46},
	LogP:            []int{61, 50},
	LogDefaultScale: logDefaultScale,
	RingType:        ring.ConjugateInvariant,
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
