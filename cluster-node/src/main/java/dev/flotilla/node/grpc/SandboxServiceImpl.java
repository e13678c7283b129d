package dev.flotilla.node.grpc;

import dev.flotilla.api.v1.AttachProcessRequest;
import dev.flotilla.api.v1.AttachProcessResponse;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxResponse;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.ListEventsRequest;
import dev.flotilla.api.v1.ListProcessesRequest;
import dev.flotilla.api.v1.ListProcessesResponse;
import dev.flotilla.api.v1.ListEventsResponse;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.ListSandboxesResponse;
import dev.flotilla.api.v1.PauseSandboxRequest;
import dev.flotilla.api.v1.ProcessInfo;
import dev.flotilla.api.v1.ReadFileRequest;
import dev.flotilla.api.v1.ReadFileResponse;
import dev.flotilla.api.v1.ReadLogsRequest;
import dev.flotilla.api.v1.ReadLogsResponse;
import dev.flotilla.api.v1.ResumeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.SandboxServicePowerApi;
import dev.flotilla.api.v1.SetTimeoutRequest;
import dev.flotilla.api.v1.SignalProcessRequest;
import dev.flotilla.api.v1.SignalProcessResponse;
import dev.flotilla.api.v1.StartProcessRequest;
import dev.flotilla.api.v1.StartSandboxRequest;
import dev.flotilla.api.v1.StopSandboxRequest;
import dev.flotilla.api.v1.WatchSandboxRequest;
import dev.flotilla.api.v1.WriteFileRequest;
import dev.flotilla.api.v1.WriteFileResponse;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.sandbox.SandboxControl;
import dev.flotilla.sandbox.SandboxView;
import dev.flotilla.api.v1.ExecInteractiveRequest;
import dev.flotilla.api.v1.ExecInteractiveStart;
import dev.flotilla.sandbox.protocol.ExecInput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.InteractiveExec;
import io.grpc.Status;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.function.Function;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.grpc.GrpcServiceException;
import org.apache.pekko.grpc.javadsl.Metadata;
import org.apache.pekko.japi.pf.PFBuilder;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.util.ByteString;

/**
 * {@code flotilla.v1.SandboxService}: authenticates the caller, converts protobuf to domain and
 * back, and delegates to {@link SandboxControl}. Every node serves it for every sandbox.
 */
public final class SandboxServiceImpl implements SandboxServicePowerApi {

  // Requests larger than this are refused with INVALID_ARGUMENT rather than carried to a guest.
  static final int MAX_ARGV = 4096;
  static final int MAX_ARGV_BYTES = 256 * 1024;
  static final int MAX_ENV = 1024;
  static final int MAX_PATH = 4096;
  /** ListDir: levels below the directory (the guest agent caps it at the same), and entries per page. */
  static final int MAX_DEPTH = 16;
  static final int MAX_PAGE = 1000;

  private final SandboxControl control;
  private final TokenAuth auth;
  private final ActorSystem<?> system;

  public SandboxServiceImpl(SandboxControl control, TokenAuth auth, ActorSystem<?> system) {
    this.control = control;
    this.auth = auth;
    this.system = system;
  }

  // ------------------------------------------------------------------------------ lifecycle

  @Override
  public CompletionStage<Sandbox> createSandbox(CreateSandboxRequest in, Metadata md) {
    // An absent spec means all defaults.
    return unary(md, tenant ->
        control.create(tenant, Translations.fromProto(in.getSpec()), in.getRequestId(), in.getImageCommand())
            .thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<Sandbox> getSandbox(GetSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.get(tenant, in.getId()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<ListSandboxesResponse> listSandboxes(ListSandboxesRequest in, Metadata md) {
    return unary(md, tenant -> {
      if (in.getPageSize() < 0) throw new IllegalArgumentException("page_size must not be negative");
      return control.list(tenant, in.getLabelSelectorMap(), Translations.fromProto(in.getPhasesList()), in.getPageSize(),
              in.getPageToken())
          .thenApply(page -> {
            var b = ListSandboxesResponse.newBuilder().setNextPageToken(page.nextPageToken());
            for (SandboxView v : page.sandboxes()) b.addSandboxes(Translations.toProto(v));
            return b.build();
          });
    });
  }

  @Override
  public CompletionStage<Sandbox> startSandbox(StartSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.start(tenant, in.getId()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<Sandbox> stopSandbox(StopSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.stop(tenant, in.getId()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<Sandbox> pauseSandbox(PauseSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.pause(tenant, in.getId()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<Sandbox> resumeSandbox(ResumeSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.resume(tenant, in.getId()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<Sandbox> forkSandbox(dev.flotilla.api.v1.ForkSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.fork(tenant, in.getId(), in.getRequestId()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<Sandbox> suspendSandbox(dev.flotilla.api.v1.SuspendSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.suspend(tenant, in.getId()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<DeleteSandboxResponse> deleteSandbox(DeleteSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.delete(tenant, in.getId())
        .thenApply(v -> DeleteSandboxResponse.newBuilder().setId(v.id()).build()));
  }

  // ------------------------------------------------------------------------------ data paths

  @Override
  public Source<ExecResponse, NotUsed> exec(ExecRequest in, Metadata md) {
    return streamed(md, tenant -> {
      ExecSpec spec = execSpec(in.getArgvList(), in.getEnvMap(), in.getWorkingDir(), in.getUser());
      return Source.completionStageSource(control.exec(tenant, in.getSandboxId(), spec))
          .map(Translations::toProto);
    });
  }

  /** One stdin message of an interactive exec, at most (a terminal sends a few bytes; a pipe, chunks). */
  static final int MAX_STDIN_MESSAGE = 64 * 1024;
  private static final java.util.regex.Pattern TERM = java.util.regex.Pattern.compile("[A-Za-z0-9._+-]{0,64}");

  @Override
  public Source<ExecResponse, NotUsed> execInteractive(Source<ExecInteractiveRequest, NotUsed> in, Metadata md) {
    return streamed(md, tenant -> Source.completionStage(in.prefixAndTail(1).runWith(Sink.head(), system))
        .flatMapConcat(pair -> {
          if (pair.first().isEmpty() || !pair.first().get(0).hasStart()) {
            throw new IllegalArgumentException("the first ExecInteractive message must be start (sandbox_id, argv, tty...)");
          }
          ExecInteractiveStart start = pair.first().get(0).getStart();
          InteractiveExec exec = interactiveExec(start);
          // A bad message fails the call (the input runs where the VM is; its failure would not reach the client).
          CompletableFuture<ExecResponse> badInput = new CompletableFuture<>();
          Source<ExecInput, NotUsed> input = pair.second().map(r -> {
            try {
              if (r.hasResize() && !exec.tty()) {
                throw GrpcErrors.status(Status.INVALID_ARGUMENT, "resize is for a terminal: start the exec with tty");
              }
              return execInput(r);
            } catch (RuntimeException e) {
              badInput.completeExceptionally(e);
              throw e;
            }
          });
          return Source.completionStageSource(control.execInteractive(tenant, start.getSandboxId(), exec, input))
              .map(Translations::toProto)
              .merge(Source.completionStage(badInput), true);
        }));
  }

  private static InteractiveExec interactiveExec(ExecInteractiveStart start) {
    ExecSpec spec = execSpec(start.getArgvList(), start.getEnvMap(), start.getWorkingDir(), start.getUser());
    if (!start.getTty() && (start.getRows() != 0 || start.getCols() != 0 || !start.getTerm().isEmpty())) {
      throw new IllegalArgumentException("rows, cols and term are for a terminal: set tty, or leave them out");
    }
    if (!TERM.matcher(start.getTerm()).matches()) {
      throw new IllegalArgumentException("term must be a terminal type such as xterm-256color (at most 64 of A-Z a-z 0-9 . _ + -)");
    }
    return new InteractiveExec(spec, start.getTty(), side("rows", start.getRows(), true), side("cols", start.getCols(), true),
        start.getTerm());
  }

  /** A terminal side as the client gave it (unsigned): 1-65535, or 0 where the default is allowed. */
  private static int side(String name, int value, boolean zeroAllowed) {
    long v = Integer.toUnsignedLong(value);
    if (v > InteractiveExec.MAX_SIDE || (v == 0 && !zeroAllowed)) {
      throw new IllegalArgumentException(name + " must be 1-" + InteractiveExec.MAX_SIDE + (zeroAllowed ? " (0: the default)" : "")
          + ", not " + v);
    }
    return (int) v;
  }

  private static ExecInput execInput(ExecInteractiveRequest r) {
    try {
      return switch (r.getKindCase()) {
        case STDIN -> {
          if (r.getStdin().size() > MAX_STDIN_MESSAGE) {
            throw new IllegalArgumentException("stdin is " + r.getStdin().size() + " bytes in one message; send at most "
                + MAX_STDIN_MESSAGE + " a message");
          }
          yield new ExecInput.Stdin(ByteString.fromArrayUnsafe(r.getStdin().toByteArray()));
        }
        case RESIZE -> new ExecInput.Resize(side("resize.rows", r.getResize().getRows(), false),
            side("resize.cols", r.getResize().getCols(), false));
        case SIGNAL -> new ExecInput.Signal(dev.flotilla.sandbox.protocol.Signals.parse(r.getSignal()));
        case CLOSE_STDIN -> new ExecInput.CloseStdin();
        case START -> throw new IllegalArgumentException("only the first ExecInteractive message may be start");
        case KIND_NOT_SET -> throw new IllegalArgumentException("an ExecInteractive message must carry stdin, resize, signal or close_stdin");
      };
    } catch (IllegalArgumentException e) {
      throw GrpcErrors.status(Status.INVALID_ARGUMENT, e.getMessage());
    }
  }

  @Override
  public CompletionStage<WriteFileResponse> writeFile(Source<WriteFileRequest, NotUsed> in, Metadata md) {
    return unary(md, tenant -> in.prefixAndTail(1).runWith(Sink.head(), system).thenCompose(pair -> {
      if (pair.first().isEmpty() || !pair.first().get(0).hasHeader()) {
        throw new IllegalArgumentException("the first WriteFile message must be the header (sandbox_id, path, mode)");
      }
      var header = pair.first().get(0).getHeader();
      checkPath(header.getPath());
      Source<ByteString, NotUsed> data = pair.second().map(r -> {
        if (r.hasHeader()) throw GrpcErrors.status(Status.INVALID_ARGUMENT, "only the first WriteFile message may be a header");
        return ByteString.fromArrayUnsafe(r.getData().toByteArray());
      });
      return control.writeFile(tenant, header.getSandboxId(), header.getPath(), header.getMode(), data)
          .thenApply(size -> WriteFileResponse.newBuilder().setSize(size).build());
    }));
  }

  @Override
  public Source<ReadFileResponse, NotUsed> readFile(ReadFileRequest in, Metadata md) {
    return streamed(md, tenant -> {
      checkPath(in.getPath());
      return Source.completionStageSource(control.readFile(tenant, in.getSandboxId(), in.getPath()))
          .map(chunk -> ReadFileResponse.newBuilder().setData(com.google.protobuf.ByteString.copyFrom(chunk.asByteBuffer())).build());
    });
  }

  @Override
  public Source<ReadLogsResponse, NotUsed> readLogs(ReadLogsRequest in, Metadata md) {
    return streamed(md, tenant -> {
      if (in.getTail() < -1) throw new IllegalArgumentException("tail must be -1 (none), 0 (all) or a number of lines, not " + in.getTail());
      int tail = in.getTail() == 0 ? -1 : in.getTail() == -1 ? 0 : in.getTail();
      return Source.completionStageSource(control.readLogs(tenant, in.getId(), tail, in.getFollow()))
          .map(Translations::toLogs);
    });
  }

  @Override
  public CompletionStage<Sandbox> setTimeout(SetTimeoutRequest in, Metadata md) {
    return unary(md, tenant -> control.setTimeout(tenant, in.getId(), Translations.duration(in.getTimeout(), "timeout"))
        .thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<Sandbox> resizeSandbox(dev.flotilla.api.v1.ResizeSandboxRequest in, Metadata md) {
    return unary(md, tenant -> control.resize(tenant, in.getId(), in.getVcpus(), in.getMemoryMib()).thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<ListEventsResponse> listEvents(ListEventsRequest in, Metadata md) {
    return unary(md, tenant -> {
      if (in.getPageSize() < 0) throw new IllegalArgumentException("page_size must not be negative");
      return control.history(tenant, in.getId(), in.getPageSize(), in.getPageToken()).thenApply(page -> {
        var b = ListEventsResponse.newBuilder()
            .setNextPageToken(page.nextSequence() == 0 ? "" : Long.toString(page.nextSequence()));
        for (var e : page.entries()) b.addEvents(Translations.toProto(e));
        return b.build();
      });
    });
  }

  @Override
  public Source<SandboxEvent, NotUsed> watchSandbox(WatchSandboxRequest in, Metadata md) {
    return streamed(md, tenant -> control.watch(tenant, in.getId()).map(Translations::toProto));
  }

  // ------------------------------------------------------------------------------ file system

  @Override
  public CompletionStage<dev.flotilla.api.v1.ListDirResponse> listDir(dev.flotilla.api.v1.ListDirRequest in, Metadata md) {
    return unary(md, tenant -> {
      checkPath(in.getPath());
      if (in.getDepth() < 0 || in.getDepth() > MAX_DEPTH) {
        throw new IllegalArgumentException("depth must be 0 or 1 (the directory's own entries) up to " + MAX_DEPTH + ", not " + in.getDepth());
      }
      if (in.getPageSize() < 0 || in.getPageSize() > MAX_PAGE) {
        throw new IllegalArgumentException("page_size must be 0 (" + MAX_PAGE + ") up to " + MAX_PAGE + ", not " + in.getPageSize());
      }
      if (in.getPageToken().length() > MAX_PATH || in.getPageToken().indexOf('\0') >= 0) {
        throw new IllegalArgumentException("page_token is not one this API gave out: pass next_page_token as it came");
      }
      return control.listDir(tenant, in.getSandboxId(), in.getPath(), Math.max(1, in.getDepth()),
          in.getPageSize() == 0 ? MAX_PAGE : in.getPageSize(), in.getPageToken()).thenApply(Translations::toProto);
    });
  }

  @Override
  public CompletionStage<dev.flotilla.api.v1.FileInfo> stat(dev.flotilla.api.v1.StatRequest in, Metadata md) {
    return unary(md, tenant -> {
      checkPath(in.getPath());
      return control.stat(tenant, in.getSandboxId(), in.getPath(), in.getFollowLinks()).thenApply(Translations::toProto);
    });
  }

  @Override
  public CompletionStage<dev.flotilla.api.v1.FileInfo> makeDir(dev.flotilla.api.v1.MakeDirRequest in, Metadata md) {
    return unary(md, tenant -> {
      checkPath(in.getPath());
      if (in.getMode() > 07777) throw new IllegalArgumentException("mode must be permission bits (at most 07777), not " + Integer.toOctalString(in.getMode()));
      return control.makeDir(tenant, in.getSandboxId(), in.getPath(), in.getParents(), in.getMode()).thenApply(Translations::toProto);
    });
  }

  @Override
  public CompletionStage<dev.flotilla.api.v1.RemoveResponse> remove(dev.flotilla.api.v1.RemoveRequest in, Metadata md) {
    return unary(md, tenant -> {
      checkPath(in.getPath());
      return control.remove(tenant, in.getSandboxId(), in.getPath(), in.getRecursive())
          .thenApply(n -> dev.flotilla.api.v1.RemoveResponse.newBuilder().setRemoved(n).build());
    });
  }

  @Override
  public CompletionStage<dev.flotilla.api.v1.RenameResponse> rename(dev.flotilla.api.v1.RenameRequest in, Metadata md) {
    return unary(md, tenant -> {
      checkPath(in.getFrom());
      checkPath(in.getTo());
      return control.rename(tenant, in.getSandboxId(), in.getFrom(), in.getTo(), in.getOverwrite())
          .thenApply(d -> dev.flotilla.api.v1.RenameResponse.getDefaultInstance());
    });
  }

  @Override
  public Source<dev.flotilla.api.v1.WatchDirResponse, NotUsed> watchDir(dev.flotilla.api.v1.WatchDirRequest in, Metadata md) {
    return streamed(md, tenant -> {
      checkPath(in.getPath());
      return Source.completionStageSource(control.watchDir(tenant, in.getSandboxId(), in.getPath(), in.getRecursive()))
          .map(Translations::toWatch);
    });
  }

  // ------------------------------------------------------------------------------ background processes

  /** Process ids as the guest agent makes them (p-1-0a1b2c3d, main, x-...): anything else is refused unsent. */
  private static final java.util.regex.Pattern PROCESS_ID = java.util.regex.Pattern.compile("[A-Za-z0-9._-]{1,64}");

  @Override
  public CompletionStage<ProcessInfo> startProcess(StartProcessRequest in, Metadata md) {
    return unary(md, tenant -> control.startProcess(tenant, in.getSandboxId(),
            execSpec(in.getArgvList(), in.getEnvMap(), in.getWorkingDir(), in.getUser()))
        .thenApply(Translations::toProto));
  }

  @Override
  public CompletionStage<ListProcessesResponse> listProcesses(ListProcessesRequest in, Metadata md) {
    return unary(md, tenant -> control.listProcesses(tenant, in.getSandboxId()).thenApply(Translations::toProto));
  }

  @Override
  public Source<AttachProcessResponse, NotUsed> attachProcess(AttachProcessRequest in, Metadata md) {
    return streamed(md, tenant -> {
      checkProcessId(in.getProcessId());
      if (in.getOffset() < 0) throw new IllegalArgumentException("offset must be at most " + Long.MAX_VALUE);
      long[] end = {in.getOffset()};
      return Source.completionStageSource(control.attachProcess(tenant, in.getSandboxId(), in.getProcessId(), in.getOffset()))
          .map(ev -> {
            AttachProcessResponse r = Translations.toAttach(ev, end[0]);
            if (ev instanceof dev.flotilla.sandbox.protocol.ProcessOutput o) end[0] = o.next();
            return r;
          });
    });
  }

  @Override
  public CompletionStage<SignalProcessResponse> signalProcess(SignalProcessRequest in, Metadata md) {
    return unary(md, tenant -> {
      checkProcessId(in.getProcessId());
      int signal = dev.flotilla.sandbox.protocol.Signals.parse(in.getSignal());
      return control.signalProcess(tenant, in.getSandboxId(), in.getProcessId(), signal)
          .thenApply(d -> SignalProcessResponse.newBuilder().setSignal(signal).build());
    });
  }

  /** Largest PortForward data message: the agent's frames are smaller; this bounds what one message makes the node hold. */
  static final int MAX_PORT_CHUNK = 256 * 1024;

  @Override
  public Source<dev.flotilla.api.v1.PortForwardResponse, NotUsed> portForward(
      Source<dev.flotilla.api.v1.PortForwardRequest, NotUsed> in, Metadata md) {
    return streamed(md, tenant -> Source.completionStageSource(in.prefixAndTail(1).runWith(Sink.head(), system).thenCompose(pair -> {
      if (pair.first().isEmpty() || !pair.first().get(0).hasTarget()) {
        throw new IllegalArgumentException("the first PortForward message must be the target (sandbox_id and port)");
      }
      var target = pair.first().get(0).getTarget();
      long port = Integer.toUnsignedLong(target.getPort());
      if (port < 1 || port > 65535) {
        throw new IllegalArgumentException("port must be a TCP port in the sandbox, 1-65535, not " + port);
      }
      // The call may only end once the client's side has too: a gRPC call is over when its answers end.
      var callerDone = new CompletableFuture<Void>();
      Source<ByteString, NotUsed> bytes = pair.second()
          .map(r -> {
            if (r.hasTarget()) throw GrpcErrors.status(Status.INVALID_ARGUMENT, "only the first PortForward message may be the target");
            if (r.getData().size() > MAX_PORT_CHUNK) {
              throw GrpcErrors.status(Status.INVALID_ARGUMENT, "a PortForward data message of " + r.getData().size()
                  + " bytes; send at most " + MAX_PORT_CHUNK + " bytes per message");
            }
            return ByteString.fromArrayUnsafe(r.getData().toByteArray());
          })
          .watchTermination((m, done) -> {
            done.whenComplete((d, e) -> callerDone.complete(null));
            return m;
          });
      var opened = dev.flotilla.api.v1.PortForwardResponse.newBuilder()
          .setOpened(dev.flotilla.api.v1.PortForwardOpened.newBuilder().setPort((int) port)).build();
      var eof = dev.flotilla.api.v1.PortForwardResponse.newBuilder().setEof(true).build();
      return control.portForward(tenant, target.getSandboxId(), (int) port, bytes).thenApply(out -> Source.single(opened)
          .concat(out.map(b -> dev.flotilla.api.v1.PortForwardResponse.newBuilder()
              .setData(com.google.protobuf.ByteString.copyFrom(b.asByteBuffer())).build())
              .mapError(new PFBuilder<Throwable, Throwable>().match(Throwable.class, SandboxServiceImpl::portFailure).build()))
          .concat(Source.single(eof))
          .concat(Source.completionStage(callerDone).flatMapConcat(x -> Source.<dev.flotilla.api.v1.PortForwardResponse>empty())));
    })));
  }

  /**
   * A forwarded connection that broke on the node that runs the sandbox: a stream ref carries only
   * the failure's text, which starts with the kind (see SandboxError#toReplyText).
   */
  private static Throwable portFailure(Throwable t) {
    String m = String.valueOf(t.getMessage());
    int at = m.indexOf("reason: ");
    if (at < 0) return t;
    dev.flotilla.sandbox.protocol.SandboxError e = dev.flotilla.sandbox.protocol.SandboxError.fromReplyText(m.substring(at + 8));
    return e.kind() == dev.flotilla.sandbox.protocol.SandboxError.Kind.INTERNAL
        ? new dev.flotilla.sandbox.protocol.SandboxError(dev.flotilla.sandbox.protocol.SandboxError.Kind.UNAVAILABLE,
            "the forwarded connection broke: " + e.getMessage())
        : e;
  }

  private static void checkProcessId(String id) {
    if (!PROCESS_ID.matcher(id).matches()) {
      throw new IllegalArgumentException("process_id must be a process id as StartProcess or ListProcesses gave it"
          + " (1-64 characters of A-Z a-z 0-9 . _ -)");
    }
  }

  // ------------------------------------------------------------------------------ plumbing

  /** An exec's or a background process's command, bounded at the edge: what the guest will be asked to run. */
  private static ExecSpec execSpec(java.util.List<String> argv, java.util.Map<String, String> env, String workingDir, String user) {
    if (argv.isEmpty()) throw new IllegalArgumentException("argv must name a command, e.g. [\"sh\", \"-c\", \"echo hi\"]");
    if (argv.size() > MAX_ARGV) throw new IllegalArgumentException("argv has " + argv.size() + " entries; at most " + MAX_ARGV);
    long bytes = argv.stream().mapToLong(String::length).sum();
    if (bytes > MAX_ARGV_BYTES) throw new IllegalArgumentException("argv is " + bytes + " bytes; at most " + MAX_ARGV_BYTES);
    if (env.size() > MAX_ENV) throw new IllegalArgumentException("env has " + env.size() + " entries; at most " + MAX_ENV);
    long envBytes = env.entrySet().stream().mapToLong(e -> e.getKey().length() + e.getValue().length() + 2).sum();
    if (envBytes > MAX_ARGV_BYTES) throw new IllegalArgumentException("env is " + envBytes + " bytes; at most " + MAX_ARGV_BYTES);
    if (workingDir.length() > MAX_PATH || user.length() > 256) {
      throw new IllegalArgumentException("working_dir must be at most " + MAX_PATH + " and user at most 256 characters");
    }
    // NUL cannot reach a process (create's command is checked the same way): refused here, not in the guest.
    if (argv.stream().anyMatch(a -> a.indexOf('\0') >= 0)) throw new IllegalArgumentException("argv must not contain NUL characters");
    for (var e : env.entrySet()) {
      String k = e.getKey();
      if (k.isEmpty() || k.contains("=") || k.indexOf('\0') >= 0) throw new IllegalArgumentException("env name '" + k + "' is invalid");
      if (e.getValue().indexOf('\0') >= 0) throw new IllegalArgumentException("env value of '" + k + "' must not contain NUL characters");
    }
    return new ExecSpec(argv, env, workingDir, user);
  }

  private static void checkPath(String path) {
    if (!path.startsWith("/") || path.length() > MAX_PATH || path.indexOf('\0') >= 0) {
      throw new IllegalArgumentException("path must be an absolute path of at most " + MAX_PATH + " characters");
    }
  }

  private String tenantOf(Metadata md) {
    return Callers.tenant(auth, md);
  }

  private <T> CompletionStage<T> unary(Metadata md, Function<String, CompletionStage<T>> call) {
    try {
      return call.apply(tenantOf(md)).exceptionallyCompose(e -> CompletableFuture.failedFuture(GrpcErrors.convert(e)));
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(GrpcErrors.convert(e));
    }
  }

  private <T, M> Source<T, NotUsed> streamed(Metadata md, Function<String, Source<T, M>> call) {
    try {
      return call.apply(tenantOf(md))
          .mapMaterializedValue(m -> NotUsed.getInstance())
          .mapError(new PFBuilder<Throwable, Throwable>().match(Throwable.class, GrpcErrors::convert).build());
    } catch (RuntimeException e) {
      GrpcServiceException g = GrpcErrors.convert(e);
      return Source.failed(g);
    }
  }
}
