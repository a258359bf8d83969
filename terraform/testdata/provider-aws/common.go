package main

import (
	"context"
	"errors"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// errGone is read's error when the resource no longer exists.
var errGone = errors.New("not found")

// base is what the three resources share: the provider's clients, and
// import by id.
type base struct{ c *clients }

func (b *base) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	b.c = configured(req.ProviderData, &resp.Diagnostics)
}

func (b *base) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
}

// refresh is every resource's Read: the state as read finds it, or the
// resource dropped from the state when the API no longer has it (so that
// Terraform plans to create it again).
func refresh[M any](ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse, what string, id func(*M) string, read func(context.Context, *M) error) {
	var m M
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := read(ctx, &m); errors.Is(err, errGone) {
		resp.State.RemoveResource(ctx)
		return
	} else if err != nil {
		resp.Diagnostics.AddError("reading "+what+" ("+id(&m)+")", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// remove is every resource's Delete: del with the state's model.
func remove[M any](ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse, what string, id func(*M) string, del func(context.Context, string) error) {
	var m M
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if err := del(ctx, id(&m)); err != nil {
		resp.Diagnostics.AddError("deleting "+what+" ("+id(&m)+")", err.Error())
	}
}
