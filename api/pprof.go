package api

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/weft-io/weft/certs"
)

// pprofRoutes serve Go's runtime profiles (net/http/pprof) under
// /debug/pprof/ to admin tokens only, so an operator can profile a live
// node: `go tool pprof -http :0 'https://NODE/debug/pprof/profile?seconds=30'`
// with the token in an Authorization header (or a file pprof reads). A
// profile or trace runs longer than the server's write timeout allows
// other routes, so those two get the time they asked for.
func (s *Server) pprofRoutes() {
	s.Handle("GET /debug/pprof/", certs.RoleAdmin, http.HandlerFunc(pprof.Index))
	s.Handle("GET /debug/pprof/cmdline", certs.RoleAdmin, http.HandlerFunc(pprof.Cmdline))
	s.Handle("GET /debug/pprof/profile", certs.RoleAdmin, longWrite(pprof.Profile))
	s.Handle("GET /debug/pprof/symbol", certs.RoleAdmin, http.HandlerFunc(pprof.Symbol))
	s.Handle("GET /debug/pprof/trace", certs.RoleAdmin, longWrite(pprof.Trace))
}

// longWrite lets h write for the seconds the request asks (default 30,
// as pprof's) and ten more.
func longWrite(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secs, err := strconv.Atoi(r.FormValue("seconds"))
		if err != nil || secs <= 0 {
			secs = 30
		}
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Duration(secs+10) * time.Second))
		h(w, r)
	})
}
