package audit

// SetStrict sets whether a forbidden Details key panics (as in every test binary) or is removed (as in
// production), and returns a function that restores the setting.
func SetStrict(b bool) (restore func()) {
	old := strict
	strict = b
	return func() { strict = old }
}
