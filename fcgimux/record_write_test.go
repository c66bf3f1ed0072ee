package fcgimux

import "io"

// Writers over the append encoders, for tests that build input on an
// io.Writer.

func writeRecord(w io.Writer, t recType, id uint16, c []byte) error {
	_, err := w.Write(appendRecord(nil, t, id, c))
	return err
}

func writeStream(w io.Writer, t recType, id uint16, b []byte) error {
	_, err := w.Write(appendStream(nil, t, id, b))
	return err
}

func writeBeginRequest(w io.Writer, id uint16, keepConn bool) error {
	_, err := w.Write(appendBeginRequest(nil, id, keepConn))
	return err
}

func writeEndRequest(w io.Writer, id uint16, appStatus uint32, protocolStatus uint8) error {
	_, err := w.Write(appendEndRequest(nil, id, appStatus, protocolStatus))
	return err
}

func writeParams(w io.Writer, id uint16, b []byte, ends []int) error {
	out, err := appendParams(nil, id, b, ends)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
