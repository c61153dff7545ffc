package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/weft-io/weft/store"
)

// DocsResponse is the answer to a table scan. Next is the after of the
// following page, empty on the last one.
type DocsResponse struct {
	Docs []store.Doc `json:"docs"`
	Next string      `json:"next"`
}

// ObjectsResponse is the answer to GET /api/v1/ls/{path}.
type ObjectsResponse struct {
	Objects []store.Info `json:"objects"`
}

// VolumesResponse is the answer to GET /api/v1/volumes.
type VolumesResponse struct {
	Volumes []store.VolumeInfo `json:"volumes"`
}

// tablePath is the path of the table a tables route names: one segment
// after the volume.
func tablePath(r *http.Request) string {
	return "/" + r.PathValue("volume") + "/" + r.PathValue("table")
}

// tableGet serves GET /api/v1/tables/{volume}/{table}/{key...}, with the
// document's version as its ETag.
func (s *Server) tableGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if key == "" {
		badRequest(w, "empty key: scan the table without the trailing slash")
		return
	}
	doc, err := s.cfg.Store.Table(tablePath(r)).Get(r.Context(), key)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	etag := `"` + strconv.FormatUint(doc.Version, 10) + `"`
	w.Header().Set("ETag", etag)
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

// etagMatch reports whether an If-None-Match header matches etag, with
// the weak comparison RFC 9110 asks for.
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// tableScan serves GET /api/v1/tables/{volume}/{table}?prefix=&after=&limit=.
func (s *Server) tableScan(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	docs, next, err := s.cfg.Store.Table(tablePath(r)).Scan(r.Context(), q.Get("prefix"), q.Get("after"), limit)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	if docs == nil {
		docs = []store.Doc{}
	}
	writeJSON(w, http.StatusOK, DocsResponse{Docs: docs, Next: next})
}

// list serves GET /api/v1/ls/{path...}: the volumes, or the children of a
// volume or directory.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	objs, err := s.cfg.Store.List(r.Context(), "/"+r.PathValue("path"))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	if objs == nil {
		objs = []store.Info{}
	}
	writeJSON(w, http.StatusOK, ObjectsResponse{Objects: objs})
}

// volumes serves GET /api/v1/volumes.
func (s *Server) volumes(w http.ResponseWriter, r *http.Request) {
	vols := s.cfg.Store.Volumes()
	if vols == nil {
		vols = []store.VolumeInfo{}
	}
	writeJSON(w, http.StatusOK, VolumesResponse{Volumes: vols})
}
