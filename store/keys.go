package store

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Key layout. Everything that belongs to a volume lives under the volume's
// prefix, so a snapshot delta of a volume is a scan of one prefix and keys
// inside it are the same on every node.
//
//	"V" vol                                   volume record (JSON)
//	"U" vol                                   volume usage in bytes (8 bytes)
//	"S" vol 0 snapshot                        snapshot record (JSON)
//	"I"                                       name of the node that last opened the store
//	"W"                                       sequence number of the last write-ahead log record applied (wal.go)
//	"v" vol 0 "m" name                        object metadata (JSON)
//	"v" vol 0 "b" name 0 topic 0 part base    stream batch
//	"v" vol 0 "t" name 0 topic                topic index entry
//	"v" vol 0 "p" name 0 topic 0 part         partition low-water mark (after trims)
//	"v" vol 0 "c" name 0 group 0 topic 0 part consumer cursor
//	"v" vol 0 "r" name 0 key                  table row
//	"v" vol 0 "f" name 0 gen chunk            file chunk
//	"v" vol 0 "x" name                        tomb: the object is deleted, its data is being swept
//	"v" vol 0 "q" name 0 topic 0 part from    quarantined offsets [from, to) of a partition (value: to)
//	"v" vol 0 "g" name 0 gen                  a file write in progress: its chunks of gen are not yet the file's
//
// Names, topics, keys and groups never contain a NUL byte.
const (
	kindMeta   = 'm'
	kindBatch  = 'b'
	kindTopic  = 't'
	kindLow    = 'p'
	kindCursor = 'c'
	kindRow    = 'r'
	kindChunk  = 'f'
	kindTomb   = 'x'
	kindGap    = 'q'
	kindWrite  = 'g'
)

func volumeKey(vol string) []byte { return []byte("V" + vol) }
func usageKey(vol string) []byte  { return []byte("U" + vol) }
func snapshotPrefix(vol string) []byte {
	return []byte("S" + vol + "\x00")
}
func snapshotKey(vol, name string) []byte { return []byte("S" + vol + "\x00" + name) }

// volPrefix is the prefix of every key holding data of volume vol.
func volPrefix(vol string) []byte { return []byte("v" + vol + "\x00") }

// objKey builds "v" vol 0 kind name [0 part]... with the given string parts.
func objKey(vol string, kind byte, name string, parts ...string) []byte {
	n := 3 + len(vol) + len(name)
	for _, p := range parts {
		n += 1 + len(p)
	}
	b := make([]byte, 0, n+12)
	b = append(b, 'v')
	b = append(b, vol...)
	b = append(b, 0, kind)
	b = append(b, name...)
	for _, p := range parts {
		b = append(b, 0)
		b = append(b, p...)
	}
	return b
}

func metaKey(vol, name string) []byte { return objKey(vol, kindMeta, name) }

// partPrefix is the prefix of a partition's batch keys; append 8 bytes of
// base offset to get a batch key.
func partPrefix(vol, name, topic string, part int) []byte {
	b := objKey(vol, kindBatch, name, topic, "")
	return binary.BigEndian.AppendUint32(b, uint32(part))
}

func batchKey(prefix []byte, base uint64) []byte {
	b := make([]byte, len(prefix), len(prefix)+8)
	copy(b, prefix)
	return binary.BigEndian.AppendUint64(b, base)
}

func lowKey(vol, name, topic string, part int) []byte {
	b := objKey(vol, kindLow, name, topic, "")
	return binary.BigEndian.AppendUint32(b, uint32(part))
}

func cursorKey(vol, name, group, topic string, part int) []byte {
	b := objKey(vol, kindCursor, name, group, topic, "")
	return binary.BigEndian.AppendUint32(b, uint32(part))
}

func chunkKey(vol, name string, gen, idx uint64) []byte {
	b := objKey(vol, kindChunk, name, "")
	b = binary.BigEndian.AppendUint64(b, gen)
	return binary.BigEndian.AppendUint64(b, idx)
}

// gapPrefix is the prefix of a partition's quarantine records; append 8
// bytes of first offset to get a record's key.
func gapPrefix(vol, name, topic string, part int) []byte {
	b := objKey(vol, kindGap, name, topic, "")
	return binary.BigEndian.AppendUint32(b, uint32(part))
}

// writeKey marks generation gen of a file as being written.
func writeKey(vol, name string, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(objKey(vol, kindWrite, name, ""), gen)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] < 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil
}

// SplitPath splits "/<volume>/<name>" into its volume and name. The name may
// hold further slashes (directories); "/<volume>" alone gives an empty name.
func SplitPath(p string) (vol, name string, err error) {
	if !strings.HasPrefix(p, "/") {
		return "", "", fmt.Errorf("%w: %q must start with /<volume>", ErrBadPath, p)
	}
	rest := strings.TrimSuffix(p[1:], "/")
	vol, name, _ = strings.Cut(rest, "/")
	if err := checkName("volume", vol); err != nil {
		return "", "", err
	}
	if name != "" {
		for _, seg := range strings.Split(name, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", fmt.Errorf("%w: %q has an empty, . or .. segment", ErrBadPath, p)
			}
		}
		if err := checkName("name", name); err != nil {
			return "", "", err
		}
	}
	return vol, name, nil
}

// checkName rejects empty names, NUL bytes and names over 1 KiB; for volumes
// also slashes.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrBadPath, what)
	case len(s) > 1024:
		return fmt.Errorf("%w: %s longer than 1024 bytes", ErrBadPath, what)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte", ErrBadPath, what)
	case what == "volume" && strings.ContainsAny(s, "/"):
		return fmt.Errorf("%w: volume %q contains a slash", ErrBadPath, s)
	}
	return nil
}
