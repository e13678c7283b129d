package dev.flotilla.vm.supervisor;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.DirListing;
import dev.flotilla.agent.protocol.client.DirWatch;
import dev.flotilla.agent.protocol.client.FileChunk;
import dev.flotilla.agent.protocol.client.FileEntry;
import dev.flotilla.agent.protocol.client.FsEvent;
import dev.flotilla.agent.protocol.client.WatchListener;

import dev.flotilla.agent.protocol.client.GuestProcesses;
import dev.flotilla.agent.protocol.client.OutputRead;
import dev.flotilla.agent.protocol.client.OutputSink;
import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.sandbox.protocol.ExecOutput;
import dev.flotilla.sandbox.protocol.ExecInput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.InteractiveExec;
import dev.flotilla.sandbox.protocol.DirPage;
import dev.flotilla.sandbox.protocol.FsChange;
import dev.flotilla.sandbox.protocol.FsEntry;
import dev.flotilla.sandbox.protocol.FsValue;
import dev.flotilla.sandbox.protocol.WatchStarted;
import java.util.ArrayList;
import java.util.List;

import dev.flotilla.sandbox.protocol.ProcessOutput;
import dev.flotilla.sandbox.protocol.SandboxProcess;
import java.io.InputStream;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.NotUsed;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.stream.BoundedSourceQueue;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.OverflowStrategy;
import org.apache.pekko.stream.QueueOfferResult;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Keep;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.SourceQueueWithComplete;
import org.apache.pekko.stream.javadsl.StreamConverters;
import org.apache.pekko.stream.javadsl.StreamRefs;
import org.apache.pekko.util.ByteString;

/** The data paths of a {@link VmSupervisor}: exec output, file reads and writes, directory watches, as Pekko streams. */
final class AgentStreams {
  private AgentStreams() {}

  /**
   * Starts a process and returns its output as a SourceRef once it runs. Backpressure is end to
   * end: a chunk's flow-control credit goes back to the agent only once the chunk is in the
   * stream's buffer, so a slow reader stops the agent reading the process's pipe.
   */
  static CompletionStage<SourceRef<ExecEvent>> exec(
      AgentClient client, String execId, ExecSpec spec, VmSupervisor.Settings settings, Materializer mat) {
    return exec(client, execId, spec, settings, mat, () -> { });
  }

  /** As above; {@code ended} runs once when the output stream is over (or never started). */
  static CompletionStage<SourceRef<ExecEvent>> exec(
      AgentClient client, String execId, ExecSpec spec, VmSupervisor.Settings settings, Materializer mat, Runnable ended) {
    ExecRequest req = new ExecRequest(execId, spec.argv(), spec.env(), spec.workingDir(), false, spec.user());
    return exec(client, req, settings, mat, ended, outputDone -> { });
  }

  /**
   * An exec whose stdin, terminal size and signals come from {@code input}, one call into the agent
   * at a time in the order given (so input is backpressured end to end: a process that does not
   * read its stdin slows the client). Input is read only once the process runs; when it ends (the
   * client half-closed or went away) the process's stdin is closed, and input past the process's
   * end is dropped.
   */
  static CompletionStage<SourceRef<ExecEvent>> execInteractive(AgentClient client, String execId, InteractiveExec exec,
      SourceRef<ExecInput> input, VmSupervisor.Settings settings, Materializer mat, Runnable ended) {
    ExecSpec spec = exec.exec();
    ExecRequest req = new ExecRequest(execId, spec.argv(), spec.env(), spec.workingDir(), true, spec.user(),
        exec.tty() ? new ExecRequest.Tty(exec.rows(), exec.cols(), exec.term()) : null);
    return exec(client, req, settings, mat, ended, outputDone -> {
      java.util.concurrent.atomic.AtomicBoolean stdinClosed = new java.util.concurrent.atomic.AtomicBoolean();
      input.getSource()
          // nothing is read for a process whose output is over (it ended, or its reader went)
          .viaMat(org.apache.pekko.stream.KillSwitches.single(), Keep.right())
          .mapMaterializedValue(kill -> {
            outputDone.whenComplete((d, e) -> kill.shutdown());
            return kill;
          })
          .mapAsync(1, in -> input(client, execId, in, stdinClosed, settings.callTimeout())
              // a call the agent refuses (the process has ended, its stdin is closed) ends nothing: the output tells the end
              .exceptionally(err -> null))
          .runWith(org.apache.pekko.stream.javadsl.Sink.ignore(), mat)
          .whenComplete((done, err) -> {
            if (stdinClosed.compareAndSet(false, true)) client.closeStdin(execId, settings.callTimeout());
          });
    });
  }

  private static CompletableFuture<Void> input(AgentClient client, String execId, ExecInput in,
      java.util.concurrent.atomic.AtomicBoolean stdinClosed, Duration deadline) {
    if (in instanceof ExecInput.Stdin d) {
      return stdinClosed.get() ? CompletableFuture.completedFuture(null) : client.writeStdin(execId, d.data().toArray(), deadline);
    }
    if (in instanceof ExecInput.Resize r) return client.resizeTty(execId, r.rows(), r.cols(), deadline);
    if (in instanceof ExecInput.Signal s) return client.signalProcess(execId, s.signal(), deadline);
    return stdinClosed.compareAndSet(false, true) ? client.closeStdin(execId, deadline) : CompletableFuture.completedFuture(null);
  }

  private static CompletionStage<SourceRef<ExecEvent>> exec(AgentClient client, ExecRequest req, VmSupervisor.Settings settings,
      Materializer mat, Runnable ended, java.util.function.Consumer<CompletionStage<org.apache.pekko.Done>> started) {
    String execId = req.execId();
    Pair<SourceQueueWithComplete<ExecEvent>, SourceRef<ExecEvent>> m = Source.<ExecEvent>queue(settings.execBuffer(), OverflowStrategy.backpressure())
        .toMat(StreamRefs.sourceRef(), Keep.both())
        .run(mat);
    ExecPump pump = new ExecPump(m.first());
    return client.exec(req, pump, settings.callTimeout())
        .handle((pid, err) -> {
          if (err != null) {
            Throwable cause = unwrap(err);
            m.first().fail(cause);
            ended.run();
            throw new CompletionException(cause);
          }
          waitFor(client, execId, settings.execWaitSlice()).whenComplete(pump::exited);
          started.accept(m.first().watchCompletion());
          // A reader that goes away early must not leave the process running unseen.
          m.first().watchCompletion().whenComplete((done, e) -> {
            ended.run();
            if (!pump.finished()) client.signalProcess(execId, 9, settings.callTimeout());
          });
          return m.second();
        });
  }

  /** waitProcess, re-issued while the process outlives one slice. */
  private static CompletableFuture<ExitStatus> waitFor(AgentClient client, String execId, Duration slice) {
    return client.waitProcess(execId, slice).exceptionallyCompose(err -> {
      Throwable cause = unwrap(err);
      if (cause instanceof AgentException ae && ae.code() == AgentException.Code.DEADLINE_EXCEEDED && client.isOpen()) {
        return waitFor(client, execId, slice);
      }
      return CompletableFuture.failedFuture(cause);
    });
  }

  /** Feeds the agent's output callbacks into the queue, one offer at a time, in order. */
  private static final class ExecPump implements OutputSink {
    private final SourceQueueWithComplete<ExecEvent> queue;
    private final CompletableFuture<Void> stdoutEnd = new CompletableFuture<>();
    private final CompletableFuture<Void> stderrEnd = new CompletableFuture<>();
    private CompletableFuture<Void> tail = CompletableFuture.completedFuture(null);
    private volatile boolean finished;

    ExecPump(SourceQueueWithComplete<ExecEvent> queue) {
      this.queue = queue;
    }

    boolean finished() {
      return finished;
    }

    private synchronized CompletableFuture<Void> enqueue(ExecEvent ev, Runnable afterwards) {
      tail = tail.thenCompose(v -> queue.offer(ev).toCompletableFuture())
          .handle((QueueOfferResult r, Throwable e) -> {
            // Credit goes back even when the reader is gone, so the agent never stalls on us.
            if (afterwards != null) afterwards.run();
            return null;
          });
      return tail;
    }

    @Override
    public void onData(Channel channel, byte[] data, Runnable release) {
      enqueue(new ExecOutput(channel == Channel.STDERR, ByteString.fromArray(data)), release);
    }

    @Override
    public void onEnd(Channel channel) {
      (channel == Channel.STDERR ? stderrEnd : stdoutEnd).complete(null);
    }

    @Override
    public void onError(Throwable error) {
      stdoutEnd.completeExceptionally(error);
      stderrEnd.completeExceptionally(error);
    }

    void exited(ExitStatus status, Throwable err) {
      if (err != null) {
        finished = true;
        synchronized (this) {
          tail.thenRun(() -> queue.fail(unwrap(err)));
        }
        return;
      }
      // Output still in flight precedes the exit; an agent that never says end-of-stream gets a few seconds.
      CompletableFuture.allOf(stdoutEnd, stderrEnd)
          .completeOnTimeout(null, 5, TimeUnit.SECONDS)
          .handle((v, e) -> {
            finished = true;
            enqueue(new ExecExited(status.exitCode(), status.signal()), null).thenRun(queue::complete);
            return null;
          });
    }
  }

  /** The agent's process list in the sandbox's vocabulary. */
  static SandboxProcess.Listing listing(GuestProcesses l) {
    List<SandboxProcess> out = new ArrayList<>(l.processes().size());
    for (GuestProcesses.Entry e : l.processes()) {
      out.add(new SandboxProcess(e.execId(), e.pid(), e.argv(), e.argvTruncated(), e.exit().isEmpty(),
          e.exit().map(ExitStatus::exitCode).orElse(0), e.exit().map(ExitStatus::signal).orElse(0), e.detached(), e.outputEnd(),
          Instant.ofEpochMilli(e.startedUnixMillis())));
    }
    return new SandboxProcess.Listing(out, l.truncated());
  }

  /** How long one read of a background process's ring waits for output before it is asked again. */
  private static final Duration ATTACH_POLL = Duration.ofSeconds(5);

  /**
   * A background process's output from {@code offset}, read from the guest's ring on demand (a
   * slow reader reads less often; the ring, never the process, drops the oldest output, and the
   * next chunk's offset says so), then its exit. The first read happens before the stream is
   * handed out, so an unknown id or a process without a ring fails the request. {@code ended}
   * runs once when the stream is over, however, or never started.
   */
  static CompletionStage<SourceRef<ExecEvent>> attach(
      AgentClient client, String id, long offset, VmSupervisor.Settings settings, Materializer mat, Runnable ended) {
    int chunk = settings.fileChunkSize();
    Duration deadline = ATTACH_POLL.plus(settings.callTimeout());
    Runnable end = once(ended);
    return client.readOutput(id, offset, chunk, Duration.ZERO, settings.callTimeout()).thenApply(first -> {
      Source<List<ExecEvent>, NotUsed> reads = Source.unfoldAsync(new AttachCursor(offset, first), cur -> {
        if (cur.exitSent()) return CompletableFuture.completedFuture(Optional.<Pair<AttachCursor, List<ExecEvent>>>empty());
        if (cur.outputEnded()) {
          return waitFor(client, id, settings.execWaitSlice()).thenApply(x -> Optional.of(Pair.create(cur.exited(),
              List.<ExecEvent>of(new ExecExited(x.exitCode(), x.signal())))));
        }
        CompletableFuture<OutputRead> read = cur.pending() != null ? CompletableFuture.completedFuture(cur.pending())
            : client.readOutput(id, cur.offset(), chunk, ATTACH_POLL, deadline);
        return read.thenApply(r -> Optional.of(Pair.create(cur.after(r), events(r))));
      });
      return reads.<ExecEvent>mapConcat(l -> l)
          .watchTermination((m, done) -> {
            done.whenComplete((d, e) -> end.run());
            return m;
          })
          .runWith(StreamRefs.sourceRef(), mat);
    }).whenComplete((ref, err) -> {
      if (err != null) end.run();
    });
  }

  private static List<ExecEvent> events(OutputRead r) {
    List<ExecEvent> out = new ArrayList<>(r.chunks().size());
    long at = r.offset();
    for (OutputRead.Chunk c : r.chunks()) {
      out.add(new ProcessOutput(at, c.stderr(), ByteString.fromArrayUnsafe(c.data())));
      at += c.data().length;
    }
    return out;
  }

  /** Where an attach is: {@code pending} is a read already made (the first), to be emitted before the next. */
  private record AttachCursor(long offset, OutputRead pending, boolean outputEnded, boolean exitSent) {
    AttachCursor(long offset, OutputRead first) {
      this(offset, first, false, false);
    }

    /** After {@code r}: past its chunks, or (none) where the reader asked, since an offset past the end waits for output to reach it. */
    AttachCursor after(OutputRead r) {
      long next = r.chunks().isEmpty() ? Math.max(offset, r.offset()) : r.next();
      return new AttachCursor(next, null, r.eof(), false);
    }

    AttachCursor exited() {
      return new AttachCursor(offset, null, true, true);
    }
  }

  /** Reads the first chunk (so a missing file fails the request), then streams the rest on demand. */
  static CompletionStage<SourceRef<ByteString>> readFile(AgentClient client, String path, VmSupervisor.Settings settings, Materializer mat) {
    return readFile(client, path, settings, mat, () -> { });
  }

  /** As above; {@code ended} runs once when the stream is over, or when the first read failed. */
  static CompletionStage<SourceRef<ByteString>> readFile(
      AgentClient client, String path, VmSupervisor.Settings settings, Materializer mat, Runnable ended) {
    int chunk = settings.fileChunkSize();
    Runnable end = once(ended);
    return client.readFileChunk(path, 0, chunk, settings.callTimeout()).whenComplete((x, err) -> {
      if (err != null) end.run();
    }).thenApply(first -> {
      Source<ByteString, NotUsed> head = first.data().length == 0 ? Source.empty() : Source.single(ByteString.fromArray(first.data()));
      Source<ByteString, NotUsed> rest = first.eof()
          ? Source.empty()
          : Source.unfoldAsync(
              (long) first.data().length,
              offset -> offset < 0
                  ? CompletableFuture.completedFuture(Optional.<Pair<Long, ByteString>>empty())
                  : client.readFileChunk(path, offset, chunk, settings.callTimeout()).thenApply((FileChunk c) -> {
                    if (c.data().length == 0) return Optional.<Pair<Long, ByteString>>empty();
                    long next = c.eof() ? -1 : offset + c.data().length;
                    return Optional.of(Pair.create(next, ByteString.fromArray(c.data())));
                  }));
      return untilEnded(head.concat(rest), end).runWith(StreamRefs.sourceRef(), mat);
    });
  }

  /** {@code ended} at most once, whoever calls it first. */
  static Runnable once(Runnable ended) {
    java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
    return () -> {
      if (done.compareAndSet(false, true)) ended.run();
    };
  }

  /** {@code source} that runs {@code ended} when it completes, fails or is cancelled (a stream ref's reader gone). */
  static <T> Source<T, NotUsed> untilEnded(Source<T, NotUsed> source, Runnable ended) {
    return source.watchTermination((m, done) -> {
      done.whenComplete((d, e) -> ended.run());
      return m;
    });
  }

  /** Streams the caller's chunks to the agent; the client reads them from a blocking InputStream on {@code blocking}. */
  static CompletionStage<Long> writeFile(
      AgentClient client, String path, int mode, SourceRef<ByteString> data, VmSupervisor.Settings settings, Materializer mat, Executor blocking) {
    InputStream in = data.getSource().runWith(StreamConverters.asInputStream(settings.callTimeout()), mat);
    return CompletableFuture.supplyAsync(() -> client.writeFile(path, in, mode, settings.fileTimeout()), blocking)
        .thenCompose(f -> f)
        .whenComplete((size, err) -> {
          try {
            in.close();
          } catch (Exception ignored) {
            // closing cancels the upstream; nothing more to do
          }
        });
  }

  // ---------------------------------------------------------------- file system

  /** Watch events held between the agent and the stream ref; past it they are dropped and counted. */
  static final int WATCH_BUFFER = 1024;

  /**
   * Starts a watch and returns its stream once it runs: {@link WatchStarted}, then the changes.
   * The agent's listener runs on the connection's reader thread and must not block, so events go
   * into a bounded queue; what does not fit is counted into one OVERFLOW change that goes out
   * before the next event that fits. The watch is cancelled in the agent when the reader goes.
   */
  static CompletionStage<SourceRef<FsValue>> watchDir(
      AgentClient client, String path, boolean recursive, VmSupervisor.Settings settings, Materializer mat) {
    return watchDir(client, path, recursive, settings, mat, () -> { });
  }

  /** As above; {@code ended} runs once when the watch's stream is over, or when the watch did not start. */
  static CompletionStage<SourceRef<FsValue>> watchDir(
      AgentClient client, String path, boolean recursive, VmSupervisor.Settings settings, Materializer mat, Runnable ended) {
    Pair<BoundedSourceQueue<FsValue>, Source<FsValue, NotUsed>> q = Source.<FsValue>queue(WATCH_BUFFER).preMaterialize(mat);
    WatchPump pump = new WatchPump(q.first());
    Runnable end = once(ended);
    return client.watchDir(path, recursive, pump, settings.callTimeout()).handle((DirWatch watch, Throwable err) -> {
      if (err != null) {
        Throwable cause = unwrap(err);
        q.first().fail(cause);
        end.run();
        throw new CompletionException(cause);
      }
      pump.started(new WatchStarted(watch.path(), watch.watchedDirs(), watch.partial()));
      return q.second()
          .watchTermination((m, done) -> {
            done.whenComplete((d, e) -> {
              end.run();
              if (!watch.ended().isDone()) watch.cancel(settings.callTimeout());
            });
            return m;
          })
          .runWith(StreamRefs.sourceRef(), mat);
    });
  }

  /** The agent's watch events into the queue, after the WatchStarted; held until then. */
  private static final class WatchPump implements WatchListener {
    private final BoundedSourceQueue<FsValue> queue;
    private List<FsChange> early = new ArrayList<>();
    private long dropped;
    private String endedWith;
    private Throwable failedWith;

    WatchPump(BoundedSourceQueue<FsValue> queue) {
      this.queue = queue;
    }

    synchronized void started(WatchStarted s) {
      queue.offer(s);
      List<FsChange> held = early;
      early = null;
      held.forEach(this::offer);
      if (failedWith != null) queue.fail(failedWith);
      else if (endedWith != null) queue.complete();
    }

    private void offer(FsChange c) {
      if (dropped > 0) {
        if (queue.offer(new FsChange(FsChange.Kind.OVERFLOW, "", dropped)) != QueueOfferResult.enqueued()) {
          dropped++;
          return;
        }
        dropped = 0;
      }
      if (queue.offer(c) != QueueOfferResult.enqueued()) dropped++;
    }

    @Override
    public synchronized void onEvents(List<FsEvent> events) {
      for (FsEvent e : events) {
        FsChange c = new FsChange(FsChange.Kind.valueOf(e.kind().name()), e.path(), e.dropped());
        if (early != null) {
          if (early.size() < WATCH_BUFFER) early.add(c);
          else dropped++;
        } else {
          offer(c);
        }
      }
    }

    @Override
    public synchronized void onEnd(String reason) {
      if (early != null) endedWith = reason == null ? "" : reason;
      else queue.complete();
    }

    @Override
    public synchronized void onError(Throwable error) {
      if (early != null) failedWith = error;
      else queue.fail(error);
    }
  }

  static DirPage page(DirListing l) {
    List<FsEntry> entries = new ArrayList<>(l.entries().size());
    for (FileEntry e : l.entries()) entries.add(entry(e));
    return new DirPage(l.path(), entries, l.nextStartAfter().orElse(""), l.incomplete());
  }

  static FsEntry entry(FileEntry e) {
    return new FsEntry(e.name(), e.path(), FsEntry.Type.valueOf(e.type().name()), e.size(), e.mode(), e.modified(),
        e.symlinkTarget());
  }

  static Throwable unwrap(Throwable t) {
    while ((t instanceof CompletionException || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null) t = t.getCause();
    return t;
  }
}
