package dev.flotilla.vm.supervisor;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.agent.protocol.client.PortSink;
import dev.flotilla.agent.protocol.client.PortStream;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.OverflowStrategy;
import org.apache.pekko.stream.QueueOfferResult;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Keep;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.SourceQueueWithComplete;
import org.apache.pekko.stream.javadsl.StreamRefs;
import org.apache.pekko.util.ByteString;

/**
 * The data path of a forwarded port (see {@link VmSupervisorProtocol.PortForward}): the caller's
 * bytes into the agent's port stream, the sandbox's bytes out as a SourceRef, each way
 * backpressured end to end.
 *
 * <p>What the node holds for one port is bounded whatever the guest does: towards the caller,
 * {@link #BUFFER} chunks in the queue (each at most 64 KiB: the agent client refuses larger) plus
 * the port's window (credit goes back only once a chunk is in the queue), and what the stream ref
 * to the reader buffers (its buffer-capacity in chunks); towards the guest, one caller chunk waiting
 * for the agent's credit, and what the agent client lets out unacknowledged (see PortChannel).
 */
final class PortForwarding {
  private PortForwarding() {}

  /** Chunks from the sandbox held between the agent and the stream ref. */
  static final int BUFFER = 4;

  /**
   * Connects to {@code port} in the sandbox and wires {@code in} to it; completes with the
   * sandbox's bytes once connected. {@code ended} runs once when the connection is over (both
   * ways, or aborted), or never opened.
   */
  static CompletionStage<SourceRef<ByteString>> open(AgentClient client, int port, SourceRef<ByteString> in,
      VmSupervisor.Settings settings, Materializer mat, Runnable ended) {
    AtomicBoolean once = new AtomicBoolean();
    Runnable end = () -> {
      if (once.compareAndSet(false, true)) ended.run();
    };
    Pair<SourceQueueWithComplete<ByteString>, SourceRef<ByteString>> out =
        Source.<ByteString>queue(BUFFER, OverflowStrategy.backpressure())
            .toMat(StreamRefs.sourceRef(), Keep.both())
            .run(mat);
    Pump pump = new Pump(out.first());
    return client.openPort(port, pump, settings.callTimeout()).handle((PortStream stream, Throwable err) -> {
      if (err != null) {
        Throwable cause = AgentStreams.unwrap(err);
        out.first().fail(cause);
        in.getSource().runWith(Sink.cancelled(), mat); // the caller's bytes have nowhere to go
        end.run();
        throw new CompletionException(refusal(port, cause));
      }
      stream.done().whenComplete((v, e) -> end.run());
      // The caller's bytes, one chunk at a time within the agent's credit; their end half-closes
      // the socket in the sandbox, their failure (the caller went) resets it.
      in.getSource()
          .mapAsync(1, chunk -> stream.write(chunk.toArray()))
          .runWith(Sink.ignore(), mat)
          .whenComplete((done, e) -> {
            if (e == null) stream.closeWrite();
            else stream.abort("the caller's stream failed: " + VmSupervisor.reason(e));
          });
      // A reader that goes away before the sandbox's end (cancelled, or never came) resets it too.
      out.first().watchCompletion().whenComplete((done, e) -> {
        if (!pump.ended()) stream.abort(e == null ? "the reader cancelled" : "the reader failed: " + VmSupervisor.reason(e));
      });
      return out.second();
    });
  }

  /** The agent's refusal in the sandbox's words ("nothing listens on port 8080 in the sandbox"). */
  private static SandboxError refusal(int port, Throwable cause) {
    SandboxError e = GuestErrors.of("cannot forward port " + port, cause);
    if (cause instanceof AgentException ae && (ae.code() == AgentException.Code.UNAVAILABLE
        || ae.code() == AgentException.Code.INVALID_ARGUMENT)) {
      String m = String.valueOf(ae.getMessage());
      String prefix = "openPort " + port + ": ";
      return new SandboxError(e.kind(), m.startsWith(prefix) ? m.substring(prefix.length()) : m);
    }
    return e;
  }

  /** The agent's port callbacks into the queue, one offer at a time, in order; credit back once a chunk is in. */
  private static final class Pump implements PortSink {
    private final SourceQueueWithComplete<ByteString> queue;
    private CompletableFuture<Void> tail = CompletableFuture.completedFuture(null);
    private volatile boolean ended;

    Pump(SourceQueueWithComplete<ByteString> queue) {
      this.queue = queue;
    }

    /** The sandbox's side has ended (EOF or abort): the queue's end is not the reader's doing. */
    boolean ended() {
      return ended;
    }

    @Override
    public synchronized void onData(byte[] data, Runnable release) {
      tail = tail.thenCompose(v -> queue.offer(ByteString.fromArrayUnsafe(data)).toCompletableFuture())
          .handle((QueueOfferResult r, Throwable e) -> {
            // credit goes back even when the reader is gone, so that the agent never stalls on us
            release.run();
            return null;
          });
    }

    @Override
    public synchronized void onEnd() {
      ended = true;
      tail = tail.thenRun(queue::complete);
    }

    @Override
    public synchronized void onError(Throwable error) {
      ended = true;
      Throwable cause = AgentStreams.unwrap(error);
      SandboxError e = cause instanceof SandboxError se ? se : GuestErrors.of("port-forward", cause);
      // A stream ref carries only a failure's message to the reader's node: the kind goes in it.
      tail = tail.thenRun(() -> queue.fail(new PortForwardFailed(e.toReplyText())));
    }
  }

  /** How a forwarded connection broke, its message a {@link SandboxError#toReplyText()} (the kind survives a stream ref). */
  static final class PortForwardFailed extends RuntimeException {
    PortForwardFailed(String replyText) {
      super(replyText, null, false, false);
    }
  }
}
