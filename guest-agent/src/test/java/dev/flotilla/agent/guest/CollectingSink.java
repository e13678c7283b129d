package dev.flotilla.agent.guest;

import dev.flotilla.agent.protocol.client.OutputSink;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;

/** Keeps all output in memory and releases it at once; {@link #ended} completes when both channels end. */
final class CollectingSink implements OutputSink {
  private final ByteArrayOutputStream stdout = new ByteArrayOutputStream();
  private final ByteArrayOutputStream stderr = new ByteArrayOutputStream();
  private final CompletableFuture<Void> stdoutEnd = new CompletableFuture<>();
  private final CompletableFuture<Void> stderrEnd = new CompletableFuture<>();
  final CompletableFuture<Void> ended = CompletableFuture.allOf(stdoutEnd, stderrEnd);

  @Override
  public synchronized void onData(Channel channel, byte[] data, Runnable release) {
    (channel == Channel.STDOUT ? stdout : stderr).writeBytes(data);
    release.run();
  }

  @Override
  public void onEnd(Channel channel) {
    (channel == Channel.STDOUT ? stdoutEnd : stderrEnd).complete(null);
  }

  @Override
  public void onError(Throwable error) {
    stdoutEnd.completeExceptionally(error);
    stderrEnd.completeExceptionally(error);
  }

  synchronized String stdout() {
    return stdout.toString(StandardCharsets.UTF_8);
  }

  synchronized String stderr() {
    return stderr.toString(StandardCharsets.UTF_8);
  }
}
