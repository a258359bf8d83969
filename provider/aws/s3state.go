package aws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"wsfleet/rollout"
)

// Objects is rollout.Objects on one S3 bucket through aws-sdk-go-v2's S3
// client: where a change's state lives with `state: s3://BUCKET/PREFIX`.
type Objects struct {
	Client *s3.Client
	Bucket string
}

var _ rollout.Objects = (*Objects)(nil)

// NewObjects returns the bucket's objects with the standard credential
// chain and cfg's region and endpoint. An endpoint (the local cloud, or
// an S3-compatible store) is addressed path-style, bucket in the path.
// The SDK retries a failed call only a few times: an unreachable bucket
// holds the engine (see rollout.ErrStateUnavailable), which retries on
// its own clock.
func NewObjects(ctx context.Context, cfg Config, bucket string) (*Objects, error) {
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	ac, err := loadConfig(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(ac, func(o *s3.Options) {
		o.UsePathStyle = cfg.Endpoint != ""
	})
	return &Objects{Client: client, Bucket: bucket}, nil
}

// s3Error maps S3's answers to the ones rollout.ObjectStore tells apart.
func s3Error(op, key string, err error) error {
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		err = fmt.Errorf("%w: %w", rollout.ErrPrecondition, err)
	case code == "ConditionalRequestConflict" || status == http.StatusConflict:
		err = fmt.Errorf("%w: %w", rollout.ErrConflict, err)
	case code == "NoSuchKey" || code == "NotFound" || (code == "" && status == http.StatusNotFound):
		err = fmt.Errorf("%w: %w", rollout.ErrNoObject, err)
	}
	return fmt.Errorf("s3 %s %s: %w", op, key, err)
}

// Get is GetObject.
func (o *Objects) Get(ctx context.Context, key string) ([]byte, string, error) {
	out, err := o.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &o.Bucket, Key: &key})
	if err != nil {
		return nil, "", s3Error("GetObject", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", fmt.Errorf("s3 GetObject %s: %w", key, err)
	}
	return data, aws.ToString(out.ETag), nil
}

// Put is PutObject with If-None-Match: * or If-Match: ETag. A missing
// object under If-Match (404 NoSuchKey) is a failed precondition: the
// version the writer read is gone.
func (o *Objects) Put(ctx context.Context, key string, data []byte, cond rollout.PutCond) (string, error) {
	in := &s3.PutObjectInput{Bucket: &o.Bucket, Key: &key, Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))}
	switch {
	case cond.IfNoneMatch:
		in.IfNoneMatch = aws.String("*")
	case cond.IfMatch != "":
		in.IfMatch = aws.String(cond.IfMatch)
	}
	out, err := o.Client.PutObject(ctx, in)
	if err != nil {
		err = s3Error("PutObject", key, err)
		if cond.IfMatch != "" && errors.Is(err, rollout.ErrNoObject) {
			err = fmt.Errorf("%w: %w", rollout.ErrPrecondition, err)
		}
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// List is ListObjectsV2, every page.
func (o *Objects) List(ctx context.Context, prefix, delimiter string) (keys, prefixes []string, err error) {
	in := &s3.ListObjectsV2Input{Bucket: &o.Bucket, Prefix: &prefix}
	if delimiter != "" {
		in.Delimiter = &delimiter
	}
	pages := s3.NewListObjectsV2Paginator(o.Client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, nil, s3Error("ListObjectsV2", prefix, err)
		}
		for _, obj := range page.Contents {
			keys = append(keys, aws.ToString(obj.Key))
		}
		for _, cp := range page.CommonPrefixes {
			prefixes = append(prefixes, aws.ToString(cp.Prefix))
		}
	}
	return keys, prefixes, nil
}

// Delete is DeleteObject.
func (o *Objects) Delete(ctx context.Context, key string) error {
	if _, err := o.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &o.Bucket, Key: &key}); err != nil {
		return s3Error("DeleteObject", key, err)
	}
	return nil
}
