package nodeapi

// Post is the client's post, for the tests of a request of a version to
// come.
var Post = (*Client).post
