// Package firmware holds signed firmware releases: the manifest a release
// is described by, the keys that sign it, the pure verification a device
// and the core both run, and the core's registry of releases under
// /firmware.
//
// A release is an image file plus a manifest. The manifest (Manifest) is a
// deterministic-CBOR payload inside a COSE_Sign1 (RFC 9052) Ed25519
// signature, made offline by `weft firmware sign` with a key the core never
// holds; the image is not inside it, only its SHA-256 and size.
//
// Devices pin a KeySet. A new key set is itself a signed document
// (SignedKeySet), accepted only when a threshold of the current set signed
// it and its version is above the current one (TUF's root rotation, in
// miniature); a key left out of the new set is revoked from then on.
//
// Verify is the one decision: manifest bytes, image digest and size, pinned
// keys, device identity, installed version and time in, a Verdict with a
// reason out. It does no I/O and reads no clock. The core runs it before
// storing a release (Registry); the device agent runs it before and after
// fetching the image.
//
// Delivery decides which edges the core's mirror of /firmware sends each
// release's image to: those with a device of the release's class
// (Targeted, Targeting); manifests go to every edge. Places holds what it asks of
// the fleet, each device's edge and class, as the core's shadows change.
package firmware
