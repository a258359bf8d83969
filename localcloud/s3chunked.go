package localcloud

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"strconv"
	"strings"
)

// The aws-chunked content encoding, as SigV4 streaming uploads use it (the
// AWS CLI's STREAMING-AWS4-HMAC-SHA256-PAYLOAD, the SDKs'
// STREAMING-UNSIGNED-PAYLOAD-TRAILER): the body is a series of chunks
//
//	<hex size>[;chunk-signature=<sig>]\r\n<size bytes>\r\n
//
// ending with a chunk of size 0, then optional trailer lines
// "name:value\r\n" (a checksum such as x-amz-checksum-crc32, and
// x-amz-trailer-signature), then an empty line. The local cloud checks no
// signature, so chunk signatures are read and dropped; trailers are kept
// so that the checksum they carry can be verified.

// errChunked is a malformed aws-chunked body.
var errChunked = errors.New("malformed aws-chunked body")

const maxChunkLine = 4096

// chunkedReader decodes an aws-chunked body.
type chunkedReader struct {
	r        *bufio.Reader
	left     int64 // bytes left in the current chunk
	done     bool
	trailers map[string]string
	err      error
}

func newChunkedReader(r io.Reader) *chunkedReader {
	return &chunkedReader{r: bufio.NewReaderSize(r, 64<<10), trailers: map[string]string{}}
}

// line reads one CRLF-terminated line, without the CRLF.
func (c *chunkedReader) line() (string, error) {
	var b []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxChunkLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", errChunked, maxChunkLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", fmt.Errorf("%w: %v", errChunked, err)
		}
		break
	}
	s := string(b)
	if !strings.HasSuffix(s, "\r\n") {
		return "", fmt.Errorf("%w: line not ended by CRLF", errChunked)
	}
	return s[:len(s)-2], nil
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err == io.EOF {
		err = fmt.Errorf("%w: %v", errChunked, io.ErrUnexpectedEOF)
	}
	if c.left == 0 && err == nil {
		// The chunk's data ends with CRLF.
		var crlf [2]byte
		if _, err = io.ReadFull(c.r, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
			err = fmt.Errorf("%w: chunk data not followed by CRLF", errChunked)
		}
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

// next reads a chunk header, or the last chunk and its trailers.
func (c *chunkedReader) next() error {
	hdr, err := c.line()
	if err != nil {
		return err
	}
	sizeHex, ext, _ := strings.Cut(hdr, ";")
	if ext != "" && !strings.HasPrefix(ext, "chunk-signature=") {
		return fmt.Errorf("%w: unknown chunk extension %q", errChunked, ext)
	}
	if sizeHex == "" || len(sizeHex) > 15 {
		return fmt.Errorf("%w: chunk size %q", errChunked, sizeHex)
	}
	size, err := strconv.ParseInt(sizeHex, 16, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("%w: chunk size %q", errChunked, sizeHex)
	}
	if size > 0 {
		c.left = size
		return nil
	}
	c.done = true
	for n := 0; ; n++ {
		l, err := c.line()
		if err != nil {
			return err
		}
		if l == "" {
			return nil
		}
		if n >= 16 {
			return fmt.Errorf("%w: too many trailers", errChunked)
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return fmt.Errorf("%w: trailer %q", errChunked, l)
		}
		c.trailers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	}
}

// crc64NVME is the CRC-64/NVME table S3's x-amz-checksum-crc64nvme uses
// (reflected polynomial 0x9a6c9329ac4bc9b5; hash/crc64's update already
// inverts before and after, as that CRC needs).
var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// s3Checksums are the x-amz-checksum-* algorithms the local cloud verifies;
// the names are the header suffixes.
var s3Checksums = map[string]func() hash.Hash{
	"crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"crc64nvme": func() hash.Hash { return crc64.New(crc64NVME) },
	"sha1":      sha1.New,
	"sha256":    sha256.New,
}

// checksumName is the name S3 gives an algorithm in its BadDigest message.
func checksumName(alg string) string {
	switch alg {
	case "crc32":
		return "CRC32"
	case "crc32c":
		return "CRC32C"
	case "crc64nvme":
		return "CRC64NVME"
	case "sha1":
		return "SHA1"
	}
	return "SHA256"
}

// base64Sum is h's sum as S3 writes checksums.
func base64Sum(h hash.Hash) string { return base64.StdEncoding.EncodeToString(h.Sum(nil)) }
