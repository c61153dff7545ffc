// Package models holds anomaly models as signed, versioned artifacts: the
// manifest that describes a model, its verification, the parameters of
// each kind, training them on readings, and the registry of models under
// the /models volume with their stages.
//
// A model is a parameters file (JSON, Params) plus a manifest (Manifest):
// name, version, kind, device class, input channels, the parameters'
// SHA-256 and size, the training window and a summary of its data, when
// it was made and the key id. The manifest is a COSE_Sign1 over
// deterministic CBOR made with the core's model key (internal/signed, the
// same code that signs firmware). Verify is the one decision: manifest,
// parameters digest, pinned keys, class and the newest version held in, a
// Verdict with a reason out; the core runs it before it stores a model,
// an edge before it loads one.
//
// The registry (Registry) stores each version under
// /models/<name>/<version>/ and the stage of every version (candidate,
// live, retired) in /models/<name>/stages.json; the volume is mirrored to
// the edges, so an edge learns a model and its stage together.
package models
