// Package console is Veil's web desk: the pages where reviewers, providers, the authority,
// auditors, operators and vendors do in a browser the work they do with the CLI. The daemon
// serves it at /ui/ on the API's own listeners.
//
// Every page is rendered on the server (html/template) from assets embedded in the binary:
// nothing is fetched from the network at run time, and the pages run no JavaScript at all,
// so the Content-Security-Policy forbids scripts outright. Charts are SVG drawn by
// github.com/wcharczuk/go-chart/v2.
//
// The console has no authority of its own. A session holds the Veil token its principal
// signed in with, and every page and every action is a request to the HTTP API, served in
// process by the daemon's own handler with that token: the API's authorization decides what
// a page may show (a page never shows what the API would refuse the principal) and the API
// audits every action exactly as it audits the same call from the CLI.
//
// What it must never do: keep a token anywhere but in the daemon's memory (the browser gets
// an opaque session id in an HttpOnly, SameSite=Strict cookie, Secure under TLS), change
// anything on a request without the session's CSRF token, put a token or a protected value
// in a URL, a log line or an error, or read an API answer without a bound.
package console
