//go:build !unix

package localcloud

import "os"

// lockS3Dir takes no lock where flock is missing: one cloud per folder is
// then the user's to keep.
func lockS3Dir(dir string) (*os.File, error) { return nil, nil }
