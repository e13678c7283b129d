package dev.flotilla.vm.qemu;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.OutputSink;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/** Shell commands in a guest through its agent, for the QEMU tests. */
final class TestAgent {
  static final Duration CALL = Duration.ofSeconds(30);
  private static final AtomicInteger EXECS = new AtomicInteger();

  private TestAgent() {}

  record Result(ExitStatus status, String output) {}

  record Started(ByteArrayOutputStream out, CompletableFuture<Void> stdoutEnded) {}

  /** Runs {@code script} with {@code sh -c} and waits for its exit and all of its stdout. */
  static Result run(AgentClient agent, String script) throws Exception {
    return run(agent, "", "", script);
  }

  /** As {@link #run(AgentClient, String)}, as {@code user} in {@code cwd} (empty: the image's defaults). */
  static Result run(AgentClient agent, String user, String cwd, String script) throws Exception {
    String execId = "e" + EXECS.incrementAndGet();
    Started p = startProcess(agent, execId, user, cwd, script);
    ExitStatus status = agent.waitProcess(execId, CALL).get(CALL.toSeconds(), TimeUnit.SECONDS);
    p.stdoutEnded().get(CALL.toSeconds(), TimeUnit.SECONDS); // output may trail the exit by a frame
    synchronized (p.out()) {
      return new Result(status, p.out().toString(StandardCharsets.UTF_8));
    }
  }

  static Started startProcess(AgentClient agent, String execId, String script) throws Exception {
    return startProcess(agent, execId, "", "", script);
  }

  static Started startProcess(AgentClient agent, String execId, String user, String cwd, String script) throws Exception {
    return startProcess(agent, new ExecRequest(execId, List.of("sh", "-c", script), Map.of(), cwd, false, user));
  }

  /** {@code script} on a terminal of {@code rows} x {@code cols} (stdin open, never written); its exit and output. */
  static Result runOnTerminal(AgentClient agent, String user, int rows, int cols, String script) throws Exception {
    String execId = "t" + EXECS.incrementAndGet();
    Started p = startProcess(agent, new ExecRequest(execId, List.of("sh", "-c", script), Map.of(), "", true, user,
        new ExecRequest.Tty(rows, cols, "")));
    ExitStatus status = agent.waitProcess(execId, CALL).get(CALL.toSeconds(), TimeUnit.SECONDS);
    p.stdoutEnded().get(CALL.toSeconds(), TimeUnit.SECONDS);
    synchronized (p.out()) {
      return new Result(status, p.out().toString(StandardCharsets.UTF_8));
    }
  }

  private static Started startProcess(AgentClient agent, ExecRequest request) throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    CompletableFuture<Void> ended = new CompletableFuture<>();
    OutputSink sink = new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] data, Runnable release) {
        synchronized (out) {
          out.writeBytes(data);
        }
        release.run();
      }

      @Override
      public void onEnd(Channel channel) {
        if (channel == Channel.STDOUT) ended.complete(null);
      }
    };
    agent.exec(request, sink, CALL).get(CALL.toSeconds(), TimeUnit.SECONDS);
    return new Started(out, ended);
  }
}
