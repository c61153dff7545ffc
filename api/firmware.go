package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/weft-io/weft/certs"
	"github.com/weft-io/weft/firmware"
	"github.com/weft-io/weft/store"
)

// FirmwareReleasesResponse is the answer to GET /api/v1/firmware/releases.
type FirmwareReleasesResponse struct {
	Releases []firmware.Release `json:"releases"`
}

// firmwareRoutes adds the firmware registry's routes (docs/api.md#firmware).
// Every node serves them: the core publishes, edges serve their mirror of
// /firmware to devices.
func (s *Server) firmwareRoutes() {
	s.Handle("POST /api/v1/firmware/releases", certs.RoleAdmin, http.HandlerFunc(s.firmwarePublish))
	s.Handle("GET /api/v1/firmware/releases", certs.RoleViewer, http.HandlerFunc(s.firmwareList))
	s.Handle("GET /api/v1/firmware/releases/{name}/{version}", certs.RoleViewer, http.HandlerFunc(s.firmwareGet))
	s.Handle("GET /api/v1/firmware/releases/{name}/{version}/manifest", certs.RoleViewer, http.HandlerFunc(s.firmwareManifest))
	s.Handle("GET /api/v1/firmware/releases/{name}/{version}/image", certs.RoleViewer, http.HandlerFunc(s.firmwareImage))
}

// firmwareRegistry is the registry over the node's store, with the trusted
// keys read from Config.FirmwareKeys at each publish (so that a rotated
// file applies without a restart).
func (s *Server) firmwareRegistry() *firmware.Registry {
	r := &firmware.Registry{Store: s.cfg.Store, Now: s.cfg.Now}
	if path := s.cfg.FirmwareKeys; path != "" {
		r.Keys = func() (firmware.KeySet, error) { return firmware.ReadKeySet(path) }
	}
	return r
}

// firmwareError answers the registry's errors; others go to the error table.
func (s *Server) firmwareError(w http.ResponseWriter, r *http.Request, err error) {
	var refused *firmware.RefusedError
	switch {
	case errors.As(err, &refused):
		writeProblem(w, ProblemDetails{Status: http.StatusUnprocessableEntity, Title: "Firmware refused",
			Detail: refused.Verdict.String(), Reason: string(refused.Verdict.Reason)})
	case errors.Is(err, firmware.ErrNoKeys):
		RequestLogger(r.Context(), s.log).Warn("firmware publish without trusted keys", "err", err)
		Problem(w, http.StatusServiceUnavailable, "Firmware keys not configured", err.Error())
	case errors.Is(err, firmware.ErrExists):
		Problem(w, http.StatusConflict, "Already exists", err.Error())
	case errors.Is(err, firmware.ErrNotFound):
		Problem(w, http.StatusNotFound, "Not found", err.Error())
	default:
		s.Error(w, r, err)
	}
}

// publishMu serialises firmware publishes.
var publishMu sync.Mutex

// firmwarePublish serves POST /api/v1/firmware/releases: a
// multipart/form-data body whose first part, "manifest", is the signed
// manifest and whose second, "image", is the image, streamed into the
// store as it is hashed.
func (s *Server) firmwarePublish(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		Problem(w, http.StatusUnsupportedMediaType, "Unsupported media type", "send multipart/form-data with the parts manifest then image")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, firmware.DefaultMaxImageSize+firmware.MaxManifestSize+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	part, err := mr.NextPart()
	if err != nil || part.FormName() != "manifest" {
		badRequest(w, "the first part must be manifest")
		return
	}
	manifest, err := io.ReadAll(io.LimitReader(part, firmware.MaxManifestSize+1))
	if err != nil {
		s.bodyError(w, err)
		return
	}
	part, err = mr.NextPart()
	if err != nil || part.FormName() != "image" {
		badRequest(w, "the second part must be image")
		return
	}
	// One publish at a time: the check that a version is new and the
	// writes that store it must not interleave with another's.
	publishMu.Lock()
	rel, err := s.firmwareRegistry().Publish(r.Context(), manifest, part)
	publishMu.Unlock()
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.bodyError(w, err)
			return
		}
		s.firmwareError(w, r, err)
		return
	}
	if err := s.Audit(r, "firmware.publish", rel.ManifestPath, map[string]any{
		"name": rel.Name, "version": rel.Version.String(), "class": rel.Class, "sha256": rel.Digest(), "key_id": rel.KeyID,
	}); err != nil {
		RequestLogger(r.Context(), s.log).Warn("audit record not written", "err", err)
	}
	RequestLogger(r.Context(), s.log).Info("firmware published", "name", rel.Name, "version", rel.Version.String(), "class", rel.Class, "key_id", rel.KeyID)
	writeJSON(w, http.StatusCreated, rel)
}

// bodyError answers a body that could not be read.
func (s *Server) bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		Problem(w, http.StatusRequestEntityTooLarge, "Body too large", fmt.Sprintf("at most %d bytes", tooBig.Limit))
		return
	}
	badRequest(w, err.Error())
}

func (s *Server) firmwareList(w http.ResponseWriter, r *http.Request) {
	rels, err := s.firmwareRegistry().List(r.Context())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.firmwareError(w, r, err)
		return
	}
	if rels == nil {
		rels = []firmware.Release{}
	}
	writeJSON(w, http.StatusOK, FirmwareReleasesResponse{Releases: rels})
}

// firmwareVersion reads {name} and {version}; it answers and returns false
// when the version is malformed.
func firmwareVersion(w http.ResponseWriter, r *http.Request) (string, firmware.Version, bool) {
	v, err := firmware.ParseVersion(r.PathValue("version"))
	if err != nil {
		badRequest(w, err.Error())
		return "", v, false
	}
	return r.PathValue("name"), v, true
}

func (s *Server) firmwareGet(w http.ResponseWriter, r *http.Request) {
	name, v, ok := firmwareVersion(w, r)
	if !ok {
		return
	}
	rel, err := s.firmwareRegistry().Get(r.Context(), name, v)
	if err != nil {
		s.firmwareError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rel)
}

// firmwareManifest serves the signed manifest as stored (application/cose).
func (s *Server) firmwareManifest(w http.ResponseWriter, r *http.Request) {
	name, v, ok := firmwareVersion(w, r)
	if !ok {
		return
	}
	b, _, err := s.firmwareRegistry().ReadManifest(r.Context(), name, v)
	if err != nil {
		s.firmwareError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", `application/cose; cose-type="cose-sign1"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

// firmwareImage serves a release's image with Range support (RFC 9110
// byte ranges), so that a device resumes an interrupted download. The
// ETag is the image's SHA-256, for If-Range.
func (s *Server) firmwareImage(w http.ResponseWriter, r *http.Request) {
	name, v, ok := firmwareVersion(w, r)
	if !ok {
		return
	}
	// The image is served only for a release whose manifest is stored.
	if _, _, err := s.firmwareRegistry().ReadManifest(r.Context(), name, v); err != nil {
		s.firmwareError(w, r, err)
		return
	}
	if err := serveImage(w, r, s.cfg.Store, firmware.ReleaseDir(name, v)+"/"+firmware.ImageFile); err != nil {
		s.firmwareError(w, r, err)
	}
}

// serveImage serves a stored image with byte ranges; an error is returned
// before anything is written.
func serveImage(w http.ResponseWriter, r *http.Request, st *store.Store, path string) error {
	f := st.File(path)
	rc, info, err := f.OpenAt(r.Context(), 0)
	if err != nil {
		return err
	}
	rs := &fileSeeker{ctx: r.Context(), f: f, size: info.Size, rc: rc}
	defer rs.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+info.SHA256+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, rs)
	return nil
}

// fileSeeker gives a store file the io.ReadSeeker http.ServeContent needs:
// a read from an offset opens the file there (store.File.OpenAt), reading
// only the chunks from there on. It does not hash what it reads: the
// store's whole-file check (File.Open) compares only past the last byte,
// which http.ServeContent never asks for, so it cost a SHA-256 of every
// image served and checked nothing. The device checks the image against
// its signed manifest.
type fileSeeker struct {
	ctx  context.Context
	f    *store.File
	size int64
	off  int64 // where the next Read starts
	rc   io.ReadCloser
	pos  int64 // where rc is
}

func (s *fileSeeker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.off
	case io.SeekEnd:
		off += s.size
	default:
		return 0, errors.New("api: bad whence")
	}
	if off < 0 {
		return 0, errors.New("api: negative offset")
	}
	s.off = off
	return off, nil
}

func (s *fileSeeker) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if s.rc == nil || s.pos != s.off {
		if s.rc != nil {
			s.rc.Close()
		}
		rc, _, err := s.f.OpenAt(s.ctx, s.off)
		if err != nil {
			return 0, err
		}
		s.rc, s.pos = rc, s.off
	}
	n, err := s.rc.Read(p)
	s.pos += int64(n)
	s.off = s.pos
	return n, err
}

func (s *fileSeeker) Close() error {
	if s.rc != nil {
		return s.rc.Close()
	}
	return nil
}

// DeviceFirmwareConfig configures DeviceFirmware.
type DeviceFirmwareConfig struct {
	// Store holds the releases (an edge's mirror of /firmware). Required.
	Store *store.Store
	// Revocations, if set, refuses revoked device certificates (the
	// listener's TLS configuration should refuse them too).
	Revocations certs.Revoker
	// Now is the clock certificates are checked against. Default
	// time.Now.
	Now func() time.Time
	// Logger receives the handler's warnings. Nil discards them.
	Logger *slog.Logger
}

// DeviceFirmware serves devices their firmware over HTTPS with their
// certificate as the only credential, no token: GET
// /api/v1/firmware/releases/{name}/{version}/manifest and .../image (with
// byte ranges, so that a broken download resumes), and nothing else. Serve
// it on a listener that requires client certificates verified against the
// device CA, with the gateway's server certificate
// (certs.ServerConfig(pair, deviceCAs, certs.KindDevice, revocations)):
// the device's id and class come from its verified certificate. A device
// gets only releases of its class whose device list, if any, names it;
// any other is "not found", as is a release whose manifest is not stored.
// Each answer carries an X-Request-Id (WithRequestID), and the handler's
// log lines its request_id.
func DeviceFirmware(cfg DeviceFirmwareConfig) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "device-firmware")
	reg := &firmware.Registry{Store: cfg.Store}
	mux := http.NewServeMux()
	release := func(w http.ResponseWriter, r *http.Request) (firmware.Release, bool) {
		if r.TLS == nil {
			Problem(w, http.StatusForbidden, "Forbidden", "a device certificate is required")
			return firmware.Release{}, false
		}
		id, err := certs.PeerIdentity(*r.TLS, certs.KindDevice, cfg.Revocations, cfg.Now())
		if err != nil {
			Problem(w, http.StatusForbidden, "Forbidden", "a valid device certificate is required")
			return firmware.Release{}, false
		}
		name, v, ok := firmwareVersion(w, r)
		if !ok {
			return firmware.Release{}, false
		}
		rel, err := reg.Get(r.Context(), name, v)
		if err == nil && (rel.Class != id.Class || !rel.ForDevice(id.Name)) {
			err = firmware.ErrNotFound
		}
		if err != nil {
			if !errors.Is(err, firmware.ErrNotFound) {
				RequestLogger(r.Context(), log).Warn("release not read", "release", name+"@"+v.String(), "device", id.Name, "err", err)
			}
			Problem(w, http.StatusNotFound, "Not found", fmt.Sprintf("no release %s@%s for %s", name, v, id.Name))
			return firmware.Release{}, false
		}
		return rel, true
	}
	mux.HandleFunc("GET /api/v1/firmware/releases/{name}/{version}/manifest", func(w http.ResponseWriter, r *http.Request) {
		rel, ok := release(w, r)
		if !ok {
			return
		}
		b, _, err := reg.ReadManifest(r.Context(), rel.Name, rel.Version)
		if err != nil {
			Problem(w, http.StatusNotFound, "Not found", err.Error())
			return
		}
		w.Header().Set("Content-Type", `application/cose; cose-type="cose-sign1"`)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write(b)
	})
	mux.HandleFunc("GET /api/v1/firmware/releases/{name}/{version}/image", func(w http.ResponseWriter, r *http.Request) {
		rel, ok := release(w, r)
		if !ok {
			return
		}
		if err := serveImage(w, r, cfg.Store, rel.ImagePath); err != nil {
			RequestLogger(r.Context(), log).Warn("image not served", "path", rel.ImagePath, "err", err)
			Problem(w, http.StatusNotFound, "Not found", "image not readable")
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		Problem(w, http.StatusNotFound, "Not found", "devices may read firmware manifests and images only")
	})
	return WithRequestID(mux)
}
