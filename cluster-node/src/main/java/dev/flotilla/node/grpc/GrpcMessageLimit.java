package dev.flotilla.node.grpc;

import java.util.List;
import org.apache.pekko.NotUsed;
import org.apache.pekko.japi.function.Creator;
import org.apache.pekko.japi.function.Function;
import org.apache.pekko.stream.javadsl.Flow;
import org.apache.pekko.util.ByteString;

/**
 * A bound on every single gRPC message a client sends, checked on the request's bytes before
 * Pekko gRPC (1.1, which has no such setting) gathers a message whole in memory: each message is
 * a 5-byte prefix (compressed flag, 4-byte big-endian length) and that many bytes. A prefix that
 * announces more than the bound fails the request at once, whatever the message's bytes would be.
 *
 * <p>Requests as a whole are bounded by pekko-http's max-content-length, except those that may be
 * larger by design (ImportImage, which counts its own total): for those this is what keeps one
 * message from taking the node's heap.
 */
final class GrpcMessageLimit {
  private GrpcMessageLimit() {}

  /** The most a message may be: grpc-java's own default (4 MiB); the CLI sends 1 MiB chunks. */
  static final long MAX_MESSAGE_BYTES = 4L << 20;

  /** Passes the bytes through unchanged, failing when a message's prefix announces more than {@code maxMessageBytes}. */
  static Flow<ByteString, ByteString, NotUsed> flow(long maxMessageBytes) {
    Creator<Function<ByteString, Iterable<ByteString>>> checker = () -> new Checker(maxMessageBytes)::accept;
    return Flow.<ByteString>create().statefulMapConcat(checker);
  }

  /** Walks the prefixes; holds at most 4 bytes of a prefix that spans chunks. */
  static final class Checker {
    private final long max;
    /** Bytes of the current message's body still to come; -1 while reading a prefix. */
    private long bodyLeft = -1;
    private final byte[] prefix = new byte[5];
    private int prefixRead;

    Checker(long max) {
      this.max = max;
    }

    Iterable<ByteString> accept(ByteString chunk) {
      int i = 0;
      int n = chunk.size();
      while (i < n) {
        if (bodyLeft > 0) {
          long take = Math.min(bodyLeft, n - i);
          bodyLeft -= take;
          i += (int) take;
          continue;
        }
        prefix[prefixRead++] = chunk.apply(i++);
        if (prefixRead == 5) {
          long length = ((prefix[1] & 0xFFL) << 24) | ((prefix[2] & 0xFFL) << 16) | ((prefix[3] & 0xFFL) << 8) | (prefix[4] & 0xFFL);
          if (length > max) {
            // A status, so that the call fails with it however the request stream is read.
            throw GrpcErrors.status(io.grpc.Status.RESOURCE_EXHAUSTED, "a request message of " + length
                + " bytes is over this server's limit of " + max + " bytes per message: send it in smaller messages (chunks)");
          }
          prefixRead = 0;
          bodyLeft = length;
        }
      }
      return List.of(chunk);
    }
  }
}
