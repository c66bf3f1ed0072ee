// This file owns routing hints: the params through which a request asks for
// a release other than the active one (preview routing), how they are found
// in a request's params, and the Router extension that receives them. The
// hint params never reach PHP: rewriteParams drops them.

package fcgimux

import "bytes"

// The params the web server makes of the headers "X-Fpmux-Release" and
// "X-Fpmux-Preview-Token" (CGI's HTTP_ prefix, upper case, '-' as '_').
const (
	paramHintRelease = "HTTP_X_FPMUX_RELEASE"
	paramHintToken   = "HTTP_X_FPMUX_PREVIEW_TOKEN"
)

// hintMark is in both hint params' names: params without it anywhere
// carry no hint, and are not walked a second time. It leaves out their
// "HTTP_" so that the search starts from a byte that is rare in params:
// from 'H', bytes.Contains stopped at every HTTP_ param and "HTTP/1.1",
// a dozen IndexByte calls and compares per request.
var hintMark = []byte("X_FPMUX_")

// RouteHint is what a request asks of the router: the release it names
// and the token that may entitle it to that release. The slices point
// into the connection's buffers and are valid only during the call that
// gets them: a router must not keep them.
type RouteHint struct {
	Release []byte // X-Fpmux-Release; empty only with Conflict
	Token   []byte // X-Fpmux-Preview-Token; nil when absent
	// Conflict is set when either header came more than once with
	// different values (a web server that does not merge repeated
	// headers sends each as a param of its own); Release and Token then
	// hold the first values.
	Conflict bool
}

// HintRouter is a Router that also takes routing hints. A Server whose
// Router implements it calls PinHint, instead of Pin, for a request that
// names a release; any other Router pins such a request as any other.
type HintRouter interface {
	Router
	// PinHint is Pin for a request that carries hint. It decides whether
	// the hint is honoured; an error is answered 503 with its message,
	// as from Pin. It must not block.
	PinHint(hint RouteHint) (Pin, error)
}

// routeHint finds the hint params in a request's params (encoded pairs).
// ok is false when the request names no release. It allocates nothing,
// and for params that hold no hint it only scans them for hintMark.
// Params that do not decode carry no hint: rewriteParams refuses them.
func routeHint(params []byte) (h RouteHint, ok bool) {
	if !bytes.Contains(params, hintMark) {
		return RouteHint{}, false
	}
	var sawRelease, sawToken, named bool
	err := eachPair(params, func(name, value []byte) error {
		switch string(name) {
		case paramHintRelease:
			named = named || len(value) > 0
			if sawRelease && !bytes.Equal(h.Release, value) {
				h.Conflict = true
			} else if !sawRelease {
				h.Release, sawRelease = value, true
			}
		case paramHintToken:
			if sawToken && !bytes.Equal(h.Token, value) {
				h.Conflict = true
			} else if !sawToken {
				h.Token, sawToken = value, true
			}
		}
		return nil
	})
	if err != nil || !named {
		return RouteHint{}, false
	}
	return h, true
}
