package gpuflow

import "context"

// LogAppender stores a job's output from a byte offset on (JobStore does).
type LogAppender interface {
	AppendLog(ctx context.Context, jobID string, offset int64, data []byte) error
}

// logChunk is the most output copied in one piece.
const logChunk = 256 << 10

// CopyLogs copies src's output of the machine from offset on to dst, in
// chunks, and returns the new offset (as far as it got, also on error).
func CopyLogs(ctx context.Context, src LogSource, dst LogAppender, jobID, machineID string, offset int64) (int64, error) {
	for {
		data, err := src.ReadLogs(ctx, machineID, offset, logChunk)
		if err != nil || len(data) == 0 {
			return offset, err
		}
		if err := dst.AppendLog(ctx, jobID, offset, data); err != nil {
			return offset, err
		}
		offset += int64(len(data))
		if len(data) < logChunk {
			return offset, nil
		}
	}
}
