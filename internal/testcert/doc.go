// Package testcert makes throwaway TLS certificates for tests: a self-signed CA and server
// certificates it signs, written as PEM files.
//
// It is for tests only: its keys are written unencrypted to the directory given, and it never
// reads a certificate or key it did not make.
package testcert
