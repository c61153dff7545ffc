package firmware

// Announcement is the message a rollout sends a device on
// updates/device/<id>/firmware/announce: the release, its signed manifest
// and image as paths of the firmware volume, which every edge mirrors
// (the device fetches them from its edge). A rollout aborted before the
// device started sends the same message with Canceled set, replacing the
// retained announcement.
type Announcement struct {
	Rollout  string `json:"rollout"`
	Release  string `json:"release"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Manifest string `json:"manifest"`
	Image    string `json:"image"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Canceled bool   `json:"canceled,omitempty"`
}
