package daemon

import (
	_ "embed"
	"net/http"
)

// openAPI describes the API (OpenAPI 3.1). It is generated from the route list and the Go
// types of the bodies by TestOpenAPIDocument (go test ./daemon -run TestOpenAPIDocument
// -update rewrites it), which fails when the committed file is not what they make.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's description, as served at /v1/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}
