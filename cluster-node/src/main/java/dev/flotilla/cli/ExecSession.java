package dev.flotilla.cli;

import com.google.protobuf.ByteString;
import dev.flotilla.api.v1.ExecInteractiveRequest;
import dev.flotilla.api.v1.ExecInteractiveResize;
import dev.flotilla.api.v1.ExecInteractiveStart;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.ExitStatus;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;

/**
 * {@code exec -i} and {@code exec -it}: one ExecInteractive call, the CLI's stdin streamed into
 * it as it comes, the output out as it comes. With a terminal the local one is in raw mode for the
 * call (Ctrl-C is a byte for the remote process) and always put back, window changes (SIGWINCH)
 * follow as resizes; the remote exit code is the CLI's.
 */
final class ExecSession {
  /** The most stdin one message carries (the node takes up to 64 KiB). */
  static final int STDIN_CHUNK = 32 * 1024;

  private final FlotillaClient client;
  private final CliContext ctx;
  private final String sandboxId;
  private final Object ready = new Object();
  private final CompletableFuture<ExitStatus> done = new CompletableFuture<>();
  private volatile ExitStatus exit;
  private ClientCallStreamObserver<ExecInteractiveRequest> requests;

  private ExecSession(FlotillaClient client, CliContext ctx, String sandboxId) {
    this.client = client;
    this.ctx = ctx;
    this.sandboxId = sandboxId;
  }

  /** Runs the exec started by {@code start} to its end; the remote exit code. */
  static int run(FlotillaClient client, CliContext ctx, ExecInteractiveStart.Builder start) {
    if (start.getTty()) {
      if (ctx.in() != System.in || !LocalTerminal.stdinIsATerminal()) {
        throw new CliFailure(ExitCodes.USAGE, "-t needs a terminal on stdin (the input is not a TTY); use -i alone to pipe stdin");
      }
      int[] size = LocalTerminal.size();
      if (size != null) start.setRows(size[0]).setCols(size[1]);
      String term = ctx.env("TERM");
      if (term != null && term.matches("[A-Za-z0-9._+-]{1,64}")) start.setTerm(term);
    }
    return new ExecSession(client, ctx, start.getSandboxId()).run(start.build());
  }

  private int run(ExecInteractiveStart start) {
    Thread[] hook = {null};
    requests = client.bidiStream(SandboxServiceMethods.EXEC_INTERACTIVE, responses(ctx.out(), ctx.err()), hook);
    LocalTerminal terminal = null;
    Object previousWinch = null;
    try {
      send(ExecInteractiveRequest.newBuilder().setStart(start).build());
      if (start.getTty()) {
        terminal = LocalTerminal.raw();
        previousWinch = onWindowChange(this::resize);
      }
      Thread pump = new Thread(this::pumpStdin, "flotilla-cli-stdin");
      pump.setDaemon(true);
      pump.start();
      ExitStatus status = done.get();
      return ExecCommand.exitCode(status);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof CliFailure f) throw f;
      throw client.failureOf(e.getCause(), sandboxId);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      requests.cancel("interrupted", e);
      throw new CliFailure(ExitCodes.INTERRUPTED, null);
    } finally {
      if (previousWinch != null) restoreWindowChange(previousWinch);
      if (terminal != null) terminal.restore();
      FlotillaClient.endBidi(hook[0]);
    }
  }

  private ClientResponseObserver<ExecInteractiveRequest, ExecResponse> responses(PrintStream out, PrintStream err) {
    return new ClientResponseObserver<>() {
      @Override
      public void beforeStart(ClientCallStreamObserver<ExecInteractiveRequest> requestStream) {
        requestStream.setOnReadyHandler(() -> {
          synchronized (ready) {
            ready.notifyAll();
          }
        });
      }

      @Override
      public void onNext(ExecResponse msg) {
        try {
          switch (msg.getKindCase()) {
            case STDOUT -> Output.writeLive(out, msg.getStdout().toByteArray());
            case STDERR -> Output.writeLive(err, msg.getStderr().toByteArray());
            case EXIT -> exit = msg.getExit();
            default -> { } // a kind added to the API later: nothing this CLI can show
          }
        } catch (CliFailure gone) {
          done.completeExceptionally(gone);
          requests.cancel("the local output is closed", null);
        }
      }

      @Override
      public void onError(Throwable t) {
        done.completeExceptionally(t);
        wake();
      }

      @Override
      public void onCompleted() {
        if (exit != null) done.complete(exit);
        else done.completeExceptionally(new CliFailure(ExitCodes.REQUEST_FAILED,
            "the node ended the exec of " + sandboxId + " without an exit status"));
        wake();
      }
    };
  }

  private void wake() {
    synchronized (ready) {
      ready.notifyAll();
    }
  }

  /** Sends one message once the transport takes it (nothing piles up in memory); false once the call is over. */
  private boolean send(ExecInteractiveRequest r) {
    synchronized (ready) {
      try {
        while (!requests.isReady() && !done.isDone()) ready.wait(1000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
      if (done.isDone()) return false;
      try {
        requests.onNext(r);
        return true;
      } catch (RuntimeException callOver) {
        return false;
      }
    }
  }

  /** The CLI's stdin into the call as it comes; its end is the end of the remote stdin (and of what the CLI sends). */
  private void pumpStdin() {
    InputStream in = ctx.in();
    byte[] buf = new byte[STDIN_CHUNK];
    try {
      int n;
      while ((n = in.read(buf)) >= 0) {
        if (n > 0 && !send(ExecInteractiveRequest.newBuilder().setStdin(ByteString.copyFrom(buf, 0, n)).build())) return;
      }
    } catch (IOException e) {
      // stdin broke: as its end
    }
    if (send(ExecInteractiveRequest.newBuilder().setCloseStdin(true).build())) {
      synchronized (ready) {
        try {
          requests.onCompleted();
        } catch (RuntimeException callOver) {
          // the call ended meanwhile
        }
      }
    }
  }

  private void resize() {
    int[] size = LocalTerminal.size();
    if (size != null) {
      send(ExecInteractiveRequest.newBuilder()
          .setResize(ExecInteractiveResize.newBuilder().setRows(size[0]).setCols(size[1])).build());
    }
  }

  /** Runs {@code action} on every SIGWINCH (the JDK's unsupported but long-standing signal API); the handler it replaced. */
  private static Object onWindowChange(Runnable action) {
    try {
      return sun.misc.Signal.handle(new sun.misc.Signal("WINCH"), s -> action.run());
    } catch (IllegalArgumentException | UnsupportedOperationException noWinch) {
      return null; // no SIGWINCH here: the remote terminal keeps its first size
    }
  }

  private static void restoreWindowChange(Object previous) {
    try {
      sun.misc.Signal.handle(new sun.misc.Signal("WINCH"), (sun.misc.SignalHandler) previous);
    } catch (IllegalArgumentException | UnsupportedOperationException ignored) {
      // nothing was installed
    }
  }
}
