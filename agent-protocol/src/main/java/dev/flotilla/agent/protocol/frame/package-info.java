/**
 * The wire format of the guest-agent protocol: frames on one byte stream, many streams per
 * connection.
 *
 * <pre>
 * header (10 bytes, big endian): u32 payload length | u32 stream id | u8 type | u8 flags
 * REQUEST=1        payload: Request protobuf; opens stream (ids allocated by the host, never 0)
 * RESPONSE=2       payload: Response protobuf on the request's stream
 * DATA=3           payload: raw process output on the exec's stream; flags bit0 STDERR, bit1 END_OF_STREAM;
 *                  on a forwarded port's stream (OpenPort) socket bytes, both ways (STDERR+END: an abort)
 * WINDOW_UPDATE=4  payload: u32 credit increment (positive) for the exec's channel; flags bit0 STDERR;
 *                  on a port's stream both ways, from the side that takes the DATA
 * GOAWAY=5         payload: UTF-8 reason, stream 0 only; the sender closes after it
 * </pre>
 *
 * <p>Payloads above the limit (default 1 MiB), unknown types, truncated frames and frames on the
 * wrong stream are {@link dev.flotilla.agent.protocol.frame.ProtocolException}s: the receiving
 * {@link dev.flotilla.agent.protocol.frame.FrameConnection} sends GOAWAY with the reason,
 * half-closes, drains what the peer still sends (bounded) and closes.
 */
package dev.flotilla.agent.protocol.frame;
