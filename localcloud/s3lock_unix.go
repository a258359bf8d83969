//go:build unix

package localcloud

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockS3Dir takes an exclusive advisory lock on dir/.lock for the cloud's
// life: two clouds on one folder would each trust their own index, and a
// conditional write in one would not see the other's objects.
func lockS3Dir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock s3 dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("s3 dir %s is in use by another local cloud", dir)
		}
		return nil, fmt.Errorf("lock s3 dir %s: %w", dir, err)
	}
	return f, nil
}
