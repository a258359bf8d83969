package localcloud

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// s3Store keeps the local cloud's buckets and objects in a folder, so that
// a restarted cloud still has them (the rollout's remote state lives
// there). Layout, under dir:
//
//	<bucket>/.bucket        {"created": ...}, the bucket's existence
//	<bucket>/o-<sha256(key)> one object: its bytes, then its header as
//	                         JSON (key, ETag, size, content type,
//	                         last-modified, user metadata), then the
//	                         header's length as 8 bytes, big-endian
//	<bucket>/.tmp-*          an upload in flight; removed on load
//
// An object's metadata and bytes are one file so that one rename publishes
// both (the header trails the bytes because the ETag is known only once
// they are written): a write goes to a temporary file in the bucket's folder, is synced,
// then renamed over the object's name, so a crash leaves either the old
// object or the new one, never a mix. Keys are hashed into file names
// because a key may hold any character, "/" and ".." included, and be up to
// 1024 bytes long.
//
// The in-memory index (every bucket and object's header) is the truth for
// reads and conditions; mu orders every change to it with the rename that
// makes it durable, which is what makes conditional writes atomic.
type s3Store struct {
	dir  string
	lock *os.File // holds dir's lock (s3lock_unix.go) until close

	mu      sync.Mutex
	buckets map[string]*s3Bucket
	seq     uint64 // stamps each object version, to see a write that raced a request
}

type s3Bucket struct {
	name    string
	created time.Time
	objects map[string]*s3Object
}

// s3Object is one object's header, as stored at the head of its file.
type s3Object struct {
	Key          string            `json:"key"`
	ETag         string            `json:"etag"` // quoted MD5 hex, as S3 answers it
	Size         int64             `json:"size"`
	ContentType  string            `json:"content_type,omitempty"`
	Encoding     string            `json:"content_encoding,omitempty"`
	Disposition  string            `json:"content_disposition,omitempty"`
	CacheControl string            `json:"cache_control,omitempty"`
	Language     string            `json:"content_language,omitempty"`
	Modified     time.Time         `json:"last_modified"`
	Meta         map[string]string `json:"meta,omitempty"` // x-amz-meta-*, lower-case names

	seq uint64 // this version's stamp, not stored
}

// maxS3Header bounds an object file's header line when loading.
const maxS3Header = 1 << 20

func openS3Store(dir string) (*s3Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("s3 dir %s: %w", dir, err)
	}
	lock, err := lockS3Dir(dir)
	if err != nil {
		return nil, err
	}
	s := &s3Store{dir: dir, lock: lock, buckets: map[string]*s3Bucket{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("s3 dir %s: %w", dir, err)
	}
	for _, e := range ents {
		if !e.IsDir() || validBucketName(e.Name()) != nil {
			continue
		}
		b, err := s.loadBucket(e.Name())
		if err != nil {
			s.close()
			return nil, err
		}
		if b != nil {
			s.buckets[b.name] = b
		}
	}
	return s, nil
}

// close releases the folder's lock.
func (s *s3Store) close() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// loadBucket reads one bucket's folder; nil when the folder is not a bucket.
func (s *s3Store) loadBucket(name string) (*s3Bucket, error) {
	bdir := filepath.Join(s.dir, name)
	raw, err := os.ReadFile(filepath.Join(bdir, ".bucket"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load bucket %s: %w", name, err)
	}
	var hdr struct {
		Created time.Time `json:"created"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return nil, fmt.Errorf("load bucket %s: %w", name, err)
	}
	b := &s3Bucket{name: name, created: hdr.Created, objects: map[string]*s3Object{}}
	ents, err := os.ReadDir(bdir)
	if err != nil {
		return nil, fmt.Errorf("load bucket %s: %w", name, err)
	}
	for _, e := range ents {
		switch {
		case strings.HasPrefix(e.Name(), ".tmp-"):
			if err := os.Remove(filepath.Join(bdir, e.Name())); err != nil {
				return nil, fmt.Errorf("load bucket %s: remove unfinished upload: %w", name, err)
			}
		case strings.HasPrefix(e.Name(), "o-"):
			o, err := readS3Header(filepath.Join(bdir, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("load bucket %s: %w", name, err)
			}
			if objectFile(o.Key) != e.Name() {
				return nil, fmt.Errorf("load bucket %s: %s holds key %q, which belongs elsewhere", name, e.Name(), o.Key)
			}
			s.seq++
			o.seq = s.seq
			b.objects[o.Key] = o
		}
	}
	return b, nil
}

func readS3Header(path string) (*s3Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	o, err := readS3Footer(f)
	if err != nil {
		return nil, fmt.Errorf("object file %s: %w", path, err)
	}
	return o, nil
}

// readS3Footer reads the header that trails an object file's bytes and
// checks that the bytes are as long as it says.
func readS3Footer(f *os.File) (*s3Object, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var n [8]byte
	if st.Size() < 8 {
		return nil, errors.New("truncated object file")
	}
	if _, err := f.ReadAt(n[:], st.Size()-8); err != nil {
		return nil, err
	}
	hl := int64(binary.BigEndian.Uint64(n[:]))
	if hl <= 0 || hl > maxS3Header || hl > st.Size()-8 {
		return nil, fmt.Errorf("object header length %d out of bounds", hl)
	}
	raw := make([]byte, hl)
	if _, err := f.ReadAt(raw, st.Size()-8-hl); err != nil {
		return nil, err
	}
	var o s3Object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("object header: %w", err)
	}
	if o.Size != st.Size()-8-hl {
		return nil, fmt.Errorf("object header says %d bytes, the file holds %d", o.Size, st.Size()-8-hl)
	}
	return &o, nil
}

// writeS3Footer appends o's header to an object file holding its bytes.
func writeS3Footer(w io.Writer, o *s3Object) error {
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(raw)))
	if _, err := w.Write(raw); err != nil {
		return err
	}
	_, err = w.Write(n[:])
	return err
}

// objectFile is the file name of a key's object.
func objectFile(key string) string {
	h := sha256.Sum256([]byte(key))
	return "o-" + hex.EncodeToString(h[:])
}

func (s *s3Store) bucketDir(name string) string { return filepath.Join(s.dir, name) }

// createBucket makes a bucket; ok false when it exists already.
func (s *s3Store) createBucket(name string, now time.Time) (ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buckets[name] != nil {
		return false, nil
	}
	bdir := s.bucketDir(name)
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return false, fmt.Errorf("create bucket %s: %w", name, err)
	}
	raw, _ := json.Marshal(map[string]time.Time{"created": now.UTC()})
	if err := writeFileAtomic(bdir, ".bucket", bytes.NewReader(raw)); err != nil {
		return false, fmt.Errorf("create bucket %s: %w", name, err)
	}
	s.buckets[name] = &s3Bucket{name: name, created: now.UTC(), objects: map[string]*s3Object{}}
	return true, nil
}

// deleteBucket removes an empty bucket: errNoSuchBucket, errBucketNotEmpty.
func (s *s3Store) deleteBucket(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[name]
	if b == nil {
		return errNoSuchBucket
	}
	if len(b.objects) > 0 {
		return errBucketNotEmpty
	}
	// The marker goes first: a crash midway leaves a folder that is not
	// a bucket, never a bucket with half its folder.
	if err := os.Remove(filepath.Join(s.bucketDir(name), ".bucket")); err != nil {
		return fmt.Errorf("delete bucket %s: %w", name, err)
	}
	if err := os.RemoveAll(s.bucketDir(name)); err != nil {
		return fmt.Errorf("delete bucket %s: %w", name, err)
	}
	delete(s.buckets, name)
	return nil
}

var (
	errNoSuchBucket   = errors.New("no such bucket")
	errBucketNotEmpty = errors.New("bucket not empty")
)

// bucketList returns every bucket, by name.
func (s *s3Store) bucketList() []s3Bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]s3Bucket, 0, len(s.buckets))
	for _, b := range s.buckets {
		out = append(out, s3Bucket{name: b.name, created: b.created})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (s *s3Store) hasBucket(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buckets[name] != nil
}

// head returns a copy of an object's header: errNoSuchBucket, or nil
// object when the key is absent.
func (s *s3Store) head(bucket, key string) (*s3Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucket]
	if b == nil {
		return nil, errNoSuchBucket
	}
	o := b.objects[key]
	if o == nil {
		return nil, nil
	}
	cp := *o
	return &cp, nil
}

// open returns an object's header and its file, whose first Size bytes are
// the object's; the file is the version the header describes even if a
// write replaces it while the caller reads (the rename leaves the open
// file alone).
func (s *s3Store) open(bucket, key string) (*s3Object, *os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucket]
	if b == nil {
		return nil, nil, errNoSuchBucket
	}
	o := b.objects[key]
	if o == nil {
		return nil, nil, nil
	}
	f, err := os.Open(filepath.Join(s.bucketDir(bucket), objectFile(key)))
	if err != nil {
		return nil, nil, fmt.Errorf("open object %s/%s: %w", bucket, key, err)
	}
	cp := *o
	return &cp, f, nil
}

// tempObject starts an upload: a temporary file in the bucket's folder.
func (s *s3Store) tempObject(bucket string) (*os.File, error) {
	f, err := os.CreateTemp(s.bucketDir(bucket), ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("upload to %s: %w", bucket, err)
	}
	return f, nil
}

// commit publishes an upload written to tmp (bytes, then header) as
// key's object, provided check, run under the lock with the key's current
// object (nil when absent), says yes. check's error is returned as is and
// the upload discarded.
func (s *s3Store) commit(bucket string, o *s3Object, tmp string, check func(cur *s3Object) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucket]
	if b == nil {
		os.Remove(tmp)
		return errNoSuchBucket
	}
	if err := check(b.objects[o.Key]); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.bucketDir(bucket), objectFile(o.Key))); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put object %s/%s: %w", bucket, o.Key, err)
	}
	s.seq++
	o.seq = s.seq
	b.objects[o.Key] = o
	return nil
}

// remove deletes key's object if check, run under the lock with the
// current object (nil when absent), says yes.
func (s *s3Store) remove(bucket, key string, check func(cur *s3Object) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucket]
	if b == nil {
		return errNoSuchBucket
	}
	cur := b.objects[key]
	if err := check(cur); err != nil {
		return err
	}
	if cur == nil {
		return nil
	}
	if err := os.Remove(filepath.Join(s.bucketDir(bucket), objectFile(key))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete object %s/%s: %w", bucket, key, err)
	}
	delete(b.objects, key)
	return nil
}

// keys returns a bucket's objects' headers sorted by key.
func (s *s3Store) keys(bucket string) ([]s3Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[bucket]
	if b == nil {
		return nil, errNoSuchBucket
	}
	out := make([]s3Object, 0, len(b.objects))
	for _, o := range b.objects {
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// writeFileAtomic writes r to dir/name through a synced temporary file and
// a rename.
func writeFileAtomic(dir, name string, r io.Reader) error {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
