package data

// PeerError turns an error from another service into what the calling
// service's biz expects (see peerError): reasons maps the other service's
// error reasons to the caller's own domain errors, so each service's client
// under internal/data/<svc> names its errors while sharing the rest.
func PeerError(peer string, err error, reasons map[string]error) error {
	return peerError(peer, err, reasons)
}
