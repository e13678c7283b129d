package dev.flotilla.sandbox;

import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecInput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.InteractiveExec;
import dev.flotilla.sandbox.protocol.DirPage;
import dev.flotilla.sandbox.protocol.FsEntry;
import dev.flotilla.sandbox.protocol.FsValue;
import dev.flotilla.sandbox.protocol.WatchStarted;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.sandbox.protocol.SandboxProcess;
import dev.flotilla.tenant.TenantEntity;
import dev.flotilla.tenant.TenantLimits;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.pubsub.Topic;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityRef;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.OverflowStrategy;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.StreamRefs;
import org.apache.pekko.stream.typed.javadsl.ActorSource;
import org.apache.pekko.util.ByteString;

/**
 * The sandbox operations of the control plane, for any API edge (gRPC today) on any node: checks
 * requests, keeps tenant quotas and the sandbox entities in step, and turns every failure into a
 * {@link SandboxError}. Knows nothing of gRPC.
 */
public final class SandboxControl {

  private final ActorSystem<?> system;
  private final ClusterSharding sharding;
  private final SpecValidator validator;
  private final Duration askTimeout;
  private final Duration fileTimeout;
  private final ActorRef<Topic.Command<SandboxChanged>> events;
  private final JournalGuard guard;
  private volatile ImagePinning images = ImagePinning.NONE;
  /**
   * (tenant, sandbox) pairs the tenant's ledger confirmed, so that only the first call on this
   * node pays the extra ask. Only existing sandboxes get in: a made-up id is answered by the
   * ledger and never starts a sandbox entity (nor a journal row, nor a remembered entity).
   */
  private final java.util.Map<String, Boolean> known = java.util.Collections.synchronizedMap(
      new java.util.LinkedHashMap<>(1024, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(java.util.Map.Entry<String, Boolean> eldest) {
          return size() > KNOWN_MAX;
        }
      });
  private static final int KNOWN_MAX = 100_000;

  public SandboxControl(ActorSystem<?> system, SpecValidator validator, Duration askTimeout, Duration fileTimeout,
      ActorRef<Topic.Command<SandboxChanged>> events) {
    this(system, validator, askTimeout, fileTimeout, events, JournalStatus.ALWAYS_AVAILABLE, askTimeout);
  }

  /**
   * @param journal whether the entities' journal can be written; changes are refused while it
   *     cannot, and calls under way end when it goes down (see {@link JournalGuard})
   * @param readTimeoutWhileJournalDown how long a read may take while the journal is down (an
   *     entity in memory answers in milliseconds; one that must recover never does)
   */
  public SandboxControl(ActorSystem<?> system, SpecValidator validator, Duration askTimeout, Duration fileTimeout,
      ActorRef<Topic.Command<SandboxChanged>> events, JournalStatus journal, Duration readTimeoutWhileJournalDown) {
    this.system = system;
    this.sharding = ClusterSharding.get(system);
    this.validator = validator;
    this.askTimeout = askTimeout;
    this.fileTimeout = fileTimeout;
    this.events = events;
    this.guard = new JournalGuard(journal, (delay, task) -> {
      var scheduled = system.scheduler().scheduleOnce(delay, task, system.executionContext());
      return scheduled::cancel;
    }, readTimeoutWhileJournalDown);
  }

  /** The per-tenant request rate and caps on concurrent calls this node enforces (default: none). */
  public SandboxControl withLimits(TenantLimits l) {
    this.limits = l;
    return this;
  }

  private volatile TenantLimits limits = TenantLimits.NONE;

  /** Completes when the tenant's request rate allows one more call; RESOURCE_EXHAUSTED otherwise. */
  private CompletionStage<Void> admit(String tenant) {
    try {
      limits.admit(tenant);
      return CompletableFuture.completedFuture(null);
    } catch (SandboxError e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /**
   * Runs a call that streams for as long as it lasts under one of the tenant's {@code kind}
   * slots: taken first (RESOURCE_EXHAUSTED when none is free), given back when the stream ends,
   * however it ends, or when the call fails before it starts.
   */
  private <T> CompletionStage<Source<T, NotUsed>> holding(String tenant, TenantLimits.Kind kind,
      java.util.function.Supplier<CompletionStage<Source<T, NotUsed>>> call) {
    return slot(tenant, kind).thenCompose(permit -> call.get().handle((src, err) -> {
      if (err != null) {
        permit.release();
        throw err instanceof CompletionException ce ? ce : new CompletionException(err);
      }
      return src.watchTermination((m, done) -> {
        done.whenComplete((d, e) -> permit.release());
        return m;
      });
    }));
  }

  /** Admits one call of the tenant and takes one of its {@code kind} slots; RESOURCE_EXHAUSTED when either is refused. */
  private CompletableFuture<TenantLimits.Permit> slot(String tenant, TenantLimits.Kind kind) {
    try {
      limits.admit(tenant);
      return CompletableFuture.completedFuture(limits.acquire(tenant, kind));
    } catch (SandboxError e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /**
   * A call answered by the sandbox's entity with a stream (exec, file reads, logs): the tenant's
   * slot of {@code kind} held while it lasts, the sandbox checked to be the tenant's first.
   */
  private <T> CompletionStage<Source<T, NotUsed>> streamFromEntity(String tenant, String id, TenantLimits.Kind kind,
      java.util.function.Function<ActorRef<StatusReply<SourceRef<T>>>, SandboxEntity.Command> msg) {
    return holding(tenant, kind, () -> checkId(id)
        .thenCompose(x -> guard.read(() -> existing(tenant, id).thenCompose(y -> ask(sandbox(id), msg, askTimeout, null))))
        .thenApply(SourceRef::getSource));
  }

  /** How this node pins the images creates name (none: creates naming an image are refused). */
  public SandboxControl withImages(ImagePinning pinning) {
    this.images = pinning;
    return this;
  }

  /** One page of a listing; {@code nextPageToken} is empty on the last page. */
  public record Page(List<SandboxView> sandboxes, String nextPageToken) {}

  // ------------------------------------------------------------------------------ lifecycle

  /**
   * Creates a sandbox. With a request id the create is idempotent: the same id and spec return
   * the same sandbox. The quota is reserved first, in the tenant's ledger, and given back if the
   * sandbox entity refuses. Refused while the journal is down (nothing is reserved then).
   */
  public CompletionStage<SandboxView> create(String tenant, SandboxSpec requested, String requestId) {
    return create(tenant, requested, requestId, false);
  }

  /**
   * @param imageCommand the main process is the image's Entrypoint + Cmd (resolved now and
   *     recorded in the spec, as the digest is); the requested spec must then name no command
   */
  public CompletionStage<SandboxView> create(String tenant, SandboxSpec requested, String requestId, boolean imageCommand) {
    return admit(tenant).thenCompose(x -> createAdmitted(tenant, requested, requestId, imageCommand));
  }

  private CompletionStage<SandboxView> createAdmitted(String tenant, SandboxSpec requested, String requestId, boolean imageCommand) {
    if (imageCommand && !requested.command().isEmpty()) {
      return CompletableFuture.failedFuture(SandboxError.invalid(
          "give either a command or image_command (--image-command), not both"));
    }
    if (imageCommand && requested.image().isEmpty()) {
      return CompletableFuture.failedFuture(SandboxError.invalid(
          "image_command (--image-command) runs an image's Entrypoint and Cmd: name the image (--image REF)"));
    }
    if (requested.image().isEmpty()) return createPinned(tenant, requested, requestId, null);
    // The image is pulled (or found) first, and the sandbox records the digest it resolved to.
    return images.pin(tenant, requested.image())
        .thenCompose(pinned -> {
          SandboxSpec spec = requested.withImage(pinned);
          if (!imageCommand) return createPinned(tenant, spec, requestId, null);
          return images.command(tenant, pinned).thenCompose(argv -> {
            if (argv.isEmpty()) {
              throw SandboxError.invalid("image " + pinned + " has no Entrypoint or Cmd: give the command after -- instead");
            }
            return createPinned(tenant, spec.withCommand(argv), requestId, null);
          });
        });
  }

  /**
   * @param snapshotFor for a fork: makes the snapshot the new sandbox (its id given) starts from,
   *     once its quota is reserved; null: it boots
   */
  private CompletionStage<SandboxView> createPinned(String tenant, SandboxSpec requested, String requestId,
      java.util.function.Function<String, CompletionStage<String>> snapshotFor) {
    final SandboxSpec spec;
    try {
      spec = validator.normalize(requested);
      if (requestId != null && !requestId.isEmpty() && !SandboxIds.REQUEST_ID.matcher(requestId).matches()) {
        throw SandboxError.invalid("request id must be 1-128 characters of A-Z a-z 0-9 . _ -");
      }
    } catch (SandboxError e) {
      return CompletableFuture.failedFuture(e);
    }
    boolean idempotent = requestId != null && !requestId.isEmpty();
    String id = idempotent ? SandboxIds.forRequest(tenant, requestId) : SandboxIds.random();
    var reservation = new TenantEntity.Reservation(id, spec.vcpus(), spec.memoryMiB(), spec.labels(), Instant.now());
    return guard.change(() -> ask(tenant(tenant), (ActorRef<StatusReply<Boolean>> r) -> new TenantEntity.Reserve(reservation, r),
            askTimeout, SandboxError.Kind.RESOURCE_EXHAUSTED)
        .thenCompose(newlyReserved -> (snapshotFor == null ? CompletableFuture.<String>completedFuture(null)
                : guard.nextStep(() -> snapshotFor.apply(id)))
            .thenCompose(snapshot -> guard.nextStep(() -> ask(sandbox(id),
                (ActorRef<StatusReply<SandboxView>> r) -> new SandboxEntity.Create(tenant, spec, idempotent ? requestId : "", snapshot, r),
                askTimeout, null)))
            .thenCompose(v -> newlyReserved ? CompletableFuture.completedFuture(v)
                // The reservation was there before this create: a retry, or a racing create with this
                // request id and another spec that reserved first. It must be the created sandbox's.
                : guard.nextStep(() -> amend(tenant, v)).thenApply(x -> v))
            .exceptionallyCompose(err -> {
              SandboxError e = unwrap(err);
              if (newlyReserved && e.kind() != SandboxError.Kind.UNAVAILABLE) {
                // Refused for sure, but a racing create with this request id (and another spec) may
                // have made the sandbox this reservation now stands for: give the quota back only
                // when no sandbox has this id. Unsure (no answer): keep it; the ledger reconciler
                // releases it if the sandbox does not exist.
                return guard.nextStep(() -> releaseUnlessCreated(tenant, id))
                    .handle((x, ignored) -> null)
                    .thenCompose(x -> CompletableFuture.<SandboxView>failedFuture(e));
              }
              return CompletableFuture.failedFuture(e);
            })))
        .thenApply(v -> {
          known.put(knownKey(tenant, v.id()), Boolean.TRUE);
          return v;
        });
  }

  public CompletionStage<SandboxView> get(String tenant, String id) {
    return admit(tenant).thenCompose(a -> getAdmitted(tenant, id));
  }

  private CompletionStage<SandboxView> getAdmitted(String tenant, String id) {
    return checkId(id).thenCompose(x -> guard.read(() -> existing(tenant, id).thenCompose(y -> ask(sandbox(id),
        (ActorRef<StatusReply<SandboxView>> r) -> new SandboxEntity.Get(tenant, r), askTimeout, null))));
  }

  public CompletionStage<SandboxView> start(String tenant, String id) {
    return lifecycle(tenant, id, r -> new SandboxEntity.Start(tenant, r));
  }

  public CompletionStage<SandboxView> stop(String tenant, String id) {
    return lifecycle(tenant, id, r -> new SandboxEntity.Stop(tenant, r));
  }

  public CompletionStage<SandboxView> pause(String tenant, String id) {
    return lifecycle(tenant, id, r -> new SandboxEntity.Pause(tenant, r));
  }

  /**
   * A new sandbox of the tenant from a RUNNING sandbox's live state: the source is stopped for the
   * save only and runs on; the fork (its own id, identity, RNG, clock and writable disk) continues
   * from the same state. The fork is a create: its quota is reserved first, and with a request id
   * it is idempotent. FAILED_PRECONDITION when the source is not RUNNING or its driver cannot.
   */
  public CompletionStage<SandboxView> fork(String tenant, String sourceId, String requestId) {
    return admit(tenant).thenCompose(a -> checkId(sourceId))
        .thenCompose(x -> guard.read(() -> existing(tenant, sourceId).thenCompose(y -> ask(sandbox(sourceId),
            (ActorRef<StatusReply<SandboxView>> r) -> new SandboxEntity.Get(tenant, r), askTimeout, null))))
        .thenCompose(source -> {
          if (source.phase() != Phase.RUNNING) {
            throw new CompletionException(SandboxError.precondition("sandbox " + sourceId + " is " + source.phase()
                + "; only a RUNNING sandbox can be forked" + (source.phase() == Phase.SUSPENDED || source.phase() == Phase.PAUSED
                ? " (resume it first)" : "")));
          }
          return createPinned(tenant, source.spec(), requestId, forkId -> ask(sandbox(sourceId),
              (ActorRef<StatusReply<String>> r) -> new SandboxEntity.Fork(tenant, forkId, r), askTimeout, null));
        });
  }

  /** Resumes a PAUSED sandbox, or a SUSPENDED one from its snapshot. */
  public CompletionStage<SandboxView> resume(String tenant, String id) {
    return lifecycle(tenant, id, r -> new SandboxEntity.Resume(tenant, r));
  }

  /**
   * Saves a RUNNING sandbox's VM into the snapshot store and ends it (SUSPENDED). A caller whose
   * ask times out may call again: the suspend goes on, and a suspended sandbox answers at once.
   */
  public CompletionStage<SandboxView> suspend(String tenant, String id) {
    return lifecycle(tenant, id, r -> new SandboxEntity.Suspend(tenant, r));
  }

  /**
   * The sandbox now ends {@code timeout} from now (zero: never), as its spec's on-timeout says
   * (delete unless it says stop).
   */
  public CompletionStage<SandboxView> setTimeout(String tenant, String id, Duration timeout) {
    try {
      validator.checkTimeout(timeout);
    } catch (SandboxError e) {
      return CompletableFuture.failedFuture(e);
    }
    return lifecycle(tenant, id, r -> new SandboxEntity.SetTimeout(tenant, timeout, r));
  }

  /**
   * Changes a RUNNING (or PAUSED) sandbox's vCPUs and memory in place, without a restart ({@code 0}:
   * keep it); the next incarnation starts with them too. The tenant's ledger is charged first with
   * what grows (RESOURCE_EXHAUSTED past the quota), so a racing create cannot take it meanwhile;
   * what shrinks is given back once the VM has shrunk. A refusal (the driver cannot do it live, the
   * guest uses the memory) gives the charge back; a resize in doubt (no answer) keeps it, which
   * over-reserves until the next resize or delete and never lets the tenant past its quota.
   */
  public CompletionStage<SandboxView> resize(String tenant, String id, int vcpus, int memoryMiB) {
    try {
      validator.checkResize(vcpus, memoryMiB);
    } catch (SandboxError e) {
      return CompletableFuture.failedFuture(e);
    }
    return admit(tenant).thenCompose(a -> checkId(id)).thenCompose(x -> guard.change(() -> existing(tenant, id)
        .thenCompose(y -> ask(sandbox(id), (ActorRef<StatusReply<SandboxView>> r) -> new SandboxEntity.Get(tenant, r), askTimeout, null))
        .thenCompose(now -> {
          int fromV = now.spec().vcpus();
          int fromM = now.spec().memoryMiB();
          int toV = vcpus == 0 ? fromV : vcpus;
          int toM = memoryMiB == 0 ? fromM : memoryMiB;
          if (toV == fromV && toM == fromM) return CompletableFuture.completedFuture(now);
          int heldV = Math.max(fromV, toV);
          int heldM = Math.max(fromM, toM);
          return charge(tenant, id, fromV, fromM, heldV, heldM)
              .thenCompose(c -> guard.nextStep(() -> ask(sandbox(id),
                      (ActorRef<StatusReply<SandboxView>> r) -> new SandboxEntity.Resize(tenant, toV, toM, r), askTimeout, null))
                  .exceptionallyCompose(err -> {
                    SandboxError e = unwrap(err);
                    if (e.kind() == SandboxError.Kind.UNAVAILABLE) return CompletableFuture.failedFuture(e);
                    return charge(tenant, id, heldV, heldM, fromV, fromM).handle((r, ignored) -> null)
                        .thenCompose(r -> CompletableFuture.<SandboxView>failedFuture(e));
                  })
                  // What shrank is given back; if that fails the ledger over-reserves, which is safe.
                  .thenCompose(v -> charge(tenant, id, heldV, heldM, toV, toM).handle((r, ignored) -> v)));
        })));
  }

  /** The tenant's ledger: the sandbox's reservation from (vcpus, memory) to (vcpus, memory); see {@link TenantEntity.Resize}. */
  private CompletionStage<org.apache.pekko.Done> charge(String tenant, String id, int fromV, int fromM, int toV, int toM) {
    return ask(tenant(tenant), (ActorRef<StatusReply<org.apache.pekko.Done>> r) -> new TenantEntity.Resize(id, fromV, fromM, toV, toM, r),
        askTimeout, null);
  }

  /** Deletes the sandbox (its VM is stopped first) and gives its quota back. */
  public CompletionStage<SandboxView> delete(String tenant, String id) {
    return admit(tenant).thenCompose(a -> checkId(id)).thenCompose(x -> guard.change(() -> existing(tenant, id).thenCompose(z -> ask(sandbox(id),
            (ActorRef<StatusReply<SandboxView>> r) -> new SandboxEntity.Delete(tenant, r), askTimeout, null))
        .thenCompose(v -> guard.nextStep(() -> release(tenant, id)).thenApply(y -> {
          known.remove(knownKey(tenant, id));
          return v;
        }))));
  }

  /**
   * Lists a tenant's sandboxes in id order. Label filters are applied from the tenant's ledger;
   * phases need each sandbox's answer, asked in parallel for one batch at a time.
   */
  public CompletionStage<Page> list(String tenant, Map<String, String> labels, Set<Phase> phases, int pageSize, String pageToken) {
    int size = pageSize <= 0 ? 100 : pageSize;
    if (size > 1000) return CompletableFuture.failedFuture(SandboxError.invalid("page size must be at most 1000"));
    Set<Phase> wanted = phases == null || phases.isEmpty() ? java.util.EnumSet.complementOf(java.util.EnumSet.of(Phase.DELETED))
        : phases;
    return admit(tenant).thenCompose(x ->
        listFrom(tenant, labels == null ? Map.of() : labels, wanted, size, pageToken == null ? "" : pageToken, new ArrayList<>()));
  }

  private CompletionStage<Page> listFrom(String tenant, Map<String, String> labels, Set<Phase> phases, int size, String after,
      List<SandboxView> acc) {
    int batch = Math.max(size - acc.size(), 16);
    return guard.read(() -> ask(tenant(tenant), (ActorRef<TenantEntity.Page> r) -> new TenantEntity.ListReservations(after, batch, r)))
        .thenCompose(page -> {
          List<CompletableFuture<SandboxView>> views = new ArrayList<>();
          for (var r : page.reservations()) {
            if (!r.labels().entrySet().containsAll(labels.entrySet())) continue;
            known.put(knownKey(tenant, r.sandboxId()), Boolean.TRUE); // the ledger just said so
            views.add(getAdmitted(tenant, r.sandboxId()).toCompletableFuture()
                .exceptionally(e -> null)); // deleted meanwhile, or not answering: left out of this page
          }
          return CompletableFuture.allOf(views.toArray(CompletableFuture[]::new)).thenCompose(x -> {
            String last = page.reservations().isEmpty() ? after : page.reservations().get(page.reservations().size() - 1).sandboxId();
            for (var f : views) {
              SandboxView v = f.join();
              if (v == null || !phases.contains(v.phase())) continue;
              acc.add(v);
              if (acc.size() == size) {
                boolean more = page.more() || !v.id().equals(last);
                return CompletableFuture.completedFuture(new Page(acc, more ? v.id() : ""));
              }
            }
            if (!page.more()) return CompletableFuture.completedFuture(new Page(acc, ""));
            return listFrom(tenant, labels, phases, size, last, acc).toCompletableFuture();
          });
        });
  }

  /** Where {@link #history} reads from (default: nowhere, every history call UNAVAILABLE). */
  public SandboxControl withHistory(SandboxHistory h) {
    this.history = h;
    return this;
  }

  private volatile SandboxHistory history;

  /**
   * A page of the sandbox's recorded history, oldest first; see {@link SandboxHistory}. The page
   * token is the one the previous page returned (empty: from the beginning).
   */
  public CompletionStage<SandboxHistory.Page> history(String tenant, String id, int pageSize, String pageToken) {
    SandboxHistory h = history;
    if (h == null) {
      return CompletableFuture.failedFuture(new SandboxError(SandboxError.Kind.UNAVAILABLE,
          "this node keeps no readable journal, so it cannot list sandbox histories"));
    }
    long from;
    try {
      from = pageToken == null || pageToken.isEmpty() ? 1 : Long.parseLong(pageToken);
    } catch (NumberFormatException e) {
      from = 0; // refused below, like any token this API never gave out
    }
    long start = from;
    return admit(tenant).thenCompose(a -> checkId(id))
        .thenCompose(x -> guard.read(() -> h.read(tenant, id, start, pageSize)))
        .exceptionally(e -> {
          SandboxError err = unwrap(e);
          throw new CompletionException(err.kind() == SandboxError.Kind.INTERNAL
              ? new SandboxError(SandboxError.Kind.UNAVAILABLE, "the journal could not be read (" + err.getMessage()
                  + "); the request may be retried")
              : err);
        });
  }

  // ------------------------------------------------------------------------------ data paths

  /** Runs a command; the source carries its output and ends with its exit. */
  public CompletionStage<Source<ExecEvent, NotUsed>> exec(String tenant, String id, ExecSpec spec) {
    if (spec.argv().isEmpty() || spec.argv().get(0).isEmpty()) {
      return CompletableFuture.failedFuture(SandboxError.invalid("exec needs a command: argv must not be empty"));
    }
    return streamFromEntity(tenant, id, TenantLimits.Kind.EXEC, r -> new SandboxEntity.Exec(tenant, spec, r));
  }

  /**
   * Runs a command whose stdin, terminal size and signals come from {@code input} while it runs
   * (an exec slot held as for {@link #exec}); the source carries its output and ends with its exit.
   * The end of {@code input} ends the process's stdin.
   */
  public CompletionStage<Source<ExecEvent, NotUsed>> execInteractive(String tenant, String id, InteractiveExec exec,
      Source<ExecInput, ?> input) {
    if (exec.exec().argv().isEmpty() || exec.exec().argv().get(0).isEmpty()) {
      return CompletableFuture.failedFuture(SandboxError.invalid("exec needs a command: argv must not be empty"));
    }
    return streamFromEntity(tenant, id, TenantLimits.Kind.EXEC,
        r -> new SandboxEntity.ExecInteractive(tenant, exec, input.runWith(StreamRefs.sourceRef(), system), r));
  }

  /** Writes a file from the given chunks; completes with its size. */
  public CompletionStage<Long> writeFile(String tenant, String id, String path, int mode, Source<ByteString, ?> data) {
    if (path == null || !path.startsWith("/")) {
      return CompletableFuture.failedFuture(SandboxError.invalid("path must be absolute, e.g. /tmp/input.txt"));
    }
    return slot(tenant, TenantLimits.Kind.TRANSFER).thenCompose(permit -> checkId(id)
        .thenCompose(x -> guard.read(() -> existing(tenant, id).thenCompose(y -> {
      SourceRef<ByteString> ref = data.runWith(StreamRefs.sourceRef(), system);
      // Not persisted: the file goes to the VM, so a sandbox in memory takes it while the journal is down.
      return ask(sandbox(id),
          (ActorRef<StatusReply<Long>> r) -> new SandboxEntity.WriteFile(tenant, path, mode, ref, r), fileTimeout, null);
    }))).whenComplete((size, err) -> permit.release()));
  }

  public CompletionStage<Source<ByteString, NotUsed>> readFile(String tenant, String id, String path) {
    if (path == null || !path.startsWith("/")) {
      return CompletableFuture.failedFuture(SandboxError.invalid("path must be absolute, e.g. /tmp/output.txt"));
    }
    return streamFromEntity(tenant, id, TenantLimits.Kind.TRANSFER, r -> new SandboxEntity.ReadFile(tenant, path, r));
  }

  /** The main process's log; see {@link SandboxEntity.ReadLogs}. */
  public CompletionStage<Source<ExecEvent, NotUsed>> readLogs(String tenant, String id, int tail, boolean follow) {
    return streamFromEntity(tenant, id, follow ? TenantLimits.Kind.WATCH : TenantLimits.Kind.TRANSFER,
        r -> new SandboxEntity.ReadLogs(tenant, tail, follow, r));
  }

  // ------------------------------------------------------------------------------ file system
  // Forwarded to the sandbox's VM, whose guest agent resolves every path inside the sandbox's root.
  // Not persisted: like file writes, a sandbox in memory answers them while the journal is down.

  /** One page of a directory's entries down to {@code depth}; see {@link SandboxEntity.ListDir}. */
  public CompletionStage<DirPage> listDir(String tenant, String id, String path, int depth, int maxEntries, String startAfter) {
    return inGuest(tenant, id, path, askTimeout,
        r -> new SandboxEntity.ListDir(tenant, path, depth, maxEntries, startAfter == null ? "" : startAfter, r));
  }

  public CompletionStage<FsEntry> stat(String tenant, String id, String path, boolean followLinks) {
    return inGuest(tenant, id, path, askTimeout, r -> new SandboxEntity.Stat(tenant, path, followLinks, r));
  }

  public CompletionStage<FsEntry> makeDir(String tenant, String id, String path, boolean parents, int mode) {
    return inGuest(tenant, id, path, askTimeout, r -> new SandboxEntity.MakeDir(tenant, path, parents, mode, r));
  }

  /** Completes with the number of entries removed; a recursive remove may take as long as a file transfer. */
  public CompletionStage<Long> remove(String tenant, String id, String path, boolean recursive) {
    return inGuest(tenant, id, path, recursive ? fileTimeout : askTimeout, r -> new SandboxEntity.Remove(tenant, path, recursive, r));
  }

  public CompletionStage<org.apache.pekko.Done> rename(String tenant, String id, String from, String to, boolean overwrite) {
    if (to == null || !to.startsWith("/")) {
      return CompletableFuture.failedFuture(SandboxError.invalid("the new path must be absolute, e.g. /tmp/renamed.txt"));
    }
    return inGuest(tenant, id, from, askTimeout, r -> new SandboxEntity.Rename(tenant, from, to, overwrite, r));
  }

  /**
   * Watches a directory under one of the tenant's WATCH slots, held until the stream ends: one
   * {@link WatchStarted} once the watch runs, then the changes.
   */
  public CompletionStage<Source<FsValue, NotUsed>> watchDir(String tenant, String id, String path, boolean recursive) {
    if (path == null || !path.startsWith("/")) {
      return CompletableFuture.failedFuture(SandboxError.invalid("path must be absolute, e.g. /tmp"));
    }
    return streamFromEntity(tenant, id, TenantLimits.Kind.WATCH, r -> new SandboxEntity.WatchDir(tenant, path, recursive, r));
  }

  /** A file system call: the path checked, the tenant admitted, the sandbox checked to be the tenant's, then asked. */
  private <R> CompletionStage<R> inGuest(String tenant, String id, String path, Duration timeout,
      java.util.function.Function<ActorRef<StatusReply<R>>, SandboxEntity.Command> msg) {
    if (path == null || !path.startsWith("/")) {
      return CompletableFuture.failedFuture(SandboxError.invalid("path must be absolute, e.g. /tmp/dir"));
    }
    return askExisting(tenant, id, timeout, msg);
  }

  /**
   * A call the sandbox's VM answers: the tenant admitted, the id checked, the sandbox checked to be
   * the tenant's (an unknown id starts nothing), then asked. Not persisted: like file writes, a
   * sandbox in memory answers it while the journal is down.
   */
  private <R> CompletionStage<R> askExisting(String tenant, String id, Duration timeout,
      java.util.function.Function<ActorRef<StatusReply<R>>, SandboxEntity.Command> msg) {
    return admit(tenant).thenCompose(a -> checkId(id))
        .thenCompose(x -> guard.read(() -> existing(tenant, id).thenCompose(y -> ask(sandbox(id), msg, timeout, null))));
  }

  // ------------------------------------------------------------------------------ background processes

  /**
   * Starts a background process: its output goes to a bounded ring in the guest, read with
   * {@link #attachProcess}. Completes once it runs, with its id.
   */
  public CompletionStage<SandboxProcess> startProcess(String tenant, String id, ExecSpec spec) {
    if (spec.argv().isEmpty() || spec.argv().get(0).isEmpty()) {
      return CompletableFuture.failedFuture(SandboxError.invalid("a process needs a command: argv must not be empty"));
    }
    return processCall(tenant, id, r -> new SandboxEntity.StartProcess(tenant, spec, r));
  }

  /** The sandbox's processes as its guest agent knows them, oldest first. */
  public CompletionStage<SandboxProcess.Listing> listProcesses(String tenant, String id) {
    return processCall(tenant, id, r -> new SandboxEntity.ListProcesses(tenant, r));
  }

  /**
   * A background process's output from {@code offset}, then its exit once it has ended; held
   * under one of the tenant's WATCH slots for as long as the stream lasts.
   */
  public CompletionStage<Source<ExecEvent, NotUsed>> attachProcess(String tenant, String id, String processId, long offset) {
    if (offset < 0) return CompletableFuture.failedFuture(SandboxError.invalid("offset must not be negative"));
    return streamFromEntity(tenant, id, TenantLimits.Kind.WATCH, r -> new SandboxEntity.AttachProcess(tenant, processId, offset, r));
  }

  // ------------------------------------------------------------------------------ port forwarding

  /**
   * Forwards one TCP connection to {@code port} (1-65535) on the sandbox's own loopback: {@code in}
   * goes to the socket (its completion half-closes it, its failure resets it), the socket's bytes
   * come back once connected (the source completes at the sandbox's half-close and fails at a
   * reset). Held under one of the tenant's PORT_FORWARD slots until the connection is over both
   * ways; until then it counts as activity for the sandbox's idle timeout.
   */
  public CompletionStage<Source<ByteString, NotUsed>> portForward(String tenant, String id, int port, Source<ByteString, ?> in) {
    if (port < 1 || port > 65535) {
      return CompletableFuture.failedFuture(SandboxError.invalid("port must be 1-65535, not " + port));
    }
    return slot(tenant, TenantLimits.Kind.PORT_FORWARD).thenCompose(permit -> {
      // The slot is the connection's: given back once both ways are over (or the call failed).
      java.util.concurrent.atomic.AtomicInteger ways = new java.util.concurrent.atomic.AtomicInteger(2);
      Runnable oneWayOver = () -> {
        if (ways.decrementAndGet() == 0) permit.release();
      };
      return checkId(id)
          .thenCompose(x -> guard.read(() -> existing(tenant, id).thenCompose(y -> {
            // The caller's bytes cross to the node that runs the sandbox as a stream ref, made only
            // once the sandbox is known to be the tenant's.
            SourceRef<ByteString> ref = in
                .watchTermination((m, done) -> {
                  done.whenComplete((d, e) -> oneWayOver.run());
                  return m;
                })
                .runWith(StreamRefs.sourceRef(), system);
            return ask(sandbox(id),
                (ActorRef<StatusReply<SourceRef<ByteString>>> r) -> new SandboxEntity.PortForward(tenant, port, ref, r),
                askTimeout, null);
          })))
          .handle((ref, err) -> {
            if (err != null) {
              permit.release();
              throw err instanceof CompletionException ce ? ce : new CompletionException(err);
            }
            return ref.getSource().watchTermination((m, done) -> {
              done.whenComplete((d, e) -> oneWayOver.run());
              return NotUsed.getInstance();
            });
          });
    });
  }

  /** Sends signal number {@code signal} (1-64) to one of the sandbox's processes. */
  public CompletionStage<org.apache.pekko.Done> signalProcess(String tenant, String id, String processId, int signal) {
    if (signal < 1 || signal > dev.flotilla.sandbox.protocol.Signals.MAX) {
      return CompletableFuture.failedFuture(SandboxError.invalid("signal must be 1-" + dev.flotilla.sandbox.protocol.Signals.MAX));
    }
    return processCall(tenant, id, r -> new SandboxEntity.SignalProcess(tenant, processId, signal, r));
  }

  /** A unary process call: admitted, the id checked and known to be the tenant's before the entity is asked. */
  private <R> CompletionStage<R> processCall(String tenant, String id,
      java.util.function.Function<ActorRef<StatusReply<R>>, SandboxEntity.Command> msg) {
    return askExisting(tenant, id, askTimeout, msg);
  }

  /**
   * The sandbox as it is now (event "snapshot"), then each change, until it is deleted. Fails
   * with NOT_FOUND for an unknown sandbox or another tenant's. Subscribes before reading the
   * current state, so no change in between is missed (a change may show twice instead).
   */
  public Source<SandboxChanged, NotUsed> watch(String tenant, String id) {
    TenantLimits.Permit permit;
    try {
      permit = slot(tenant, TenantLimits.Kind.WATCH).join(); // completed at once, taken or refused
    } catch (CompletionException refused) {
      return Source.failed(refused.getCause());
    }
    Source<SandboxChanged, ActorRef<SandboxChanged>> live = ActorSource.actorRef(
        m -> false, m -> java.util.Optional.empty(), 256, OverflowStrategy.dropHead());
    return live
        .mapMaterializedValue(ref -> {
          events.tell(Topic.subscribe(ref));
          return ref;
        })
        .watchTermination((ref, done) -> {
          done.whenComplete((d, e) -> events.tell(Topic.unsubscribe(ref)));
          return NotUsed.getInstance();
        })
        .filter(ev -> ev.sandbox().id().equals(id) && ev.sandbox().tenant().equals(tenant))
        .prepend(Source.completionStage(getAdmitted(tenant, id)).map(v -> new SandboxChanged(v, "snapshot", Instant.now())))
        .takeWhile(ev -> ev.sandbox().phase() != Phase.DELETED, true)
        .watchTermination((m, done) -> {
          done.whenComplete((d, e) -> permit.release());
          return m;
        });
  }

  // ------------------------------------------------------------------------------ plumbing

  /** A lifecycle change: refused while the journal is down, see {@link JournalGuard}. */
  private CompletionStage<SandboxView> lifecycle(
      String tenant, String id, java.util.function.Function<ActorRef<StatusReply<SandboxView>>, SandboxEntity.Command> msg) {
    return admit(tenant).thenCompose(a -> checkId(id))
        .thenCompose(x -> guard.change(() -> existing(tenant, id).thenCompose(y -> ask(sandbox(id), msg::apply, askTimeout, null))));
  }

  /**
   * Completes when {@code id} is one of the tenant's sandboxes (it holds a reservation for it),
   * fails with NOT_FOUND otherwise, without the sandbox's entity ever being asked.
   */
  private CompletionStage<Void> existing(String tenant, String id) {
    String key = knownKey(tenant, id);
    if (known.containsKey(key)) return CompletableFuture.completedFuture(null);
    return ask(tenant(tenant), (ActorRef<Boolean> r) -> new TenantEntity.Holds(id, r)).thenAccept(held -> {
      if (!held) throw new CompletionException(SandboxError.notFound(id));
      known.put(key, Boolean.TRUE);
    });
  }

  private static String knownKey(String tenant, String id) {
    return tenant + '\u0000' + id;
  }

  private static CompletionStage<Void> checkId(String id) {
    if (!SandboxIds.isValid(id)) {
      return CompletableFuture.failedFuture(
          SandboxError.invalid("'" + id + "' is not a sandbox id (expected sb- and 16 hex digits, as printed by create)"));
    }
    return CompletableFuture.completedFuture(null);
  }

  private CompletionStage<Void> releaseUnlessCreated(String tenant, String id) {
    return sandbox(id).ask(SandboxEntity.Inspect::new, askTimeout)
        .thenCompose(i -> i.exists() ? CompletableFuture.<Void>completedFuture(null) : release(tenant, id));
  }

  private CompletionStage<Void> amend(String tenant, SandboxView v) {
    var r = new TenantEntity.Reservation(v.id(), v.spec().vcpus(), v.spec().memoryMiB(), v.spec().labels(), v.createdAt());
    return ask(tenant(tenant), (ActorRef<StatusReply<org.apache.pekko.Done>> ref) -> new TenantEntity.Amend(r, ref), askTimeout, null)
        .thenApply(x -> (Void) null);
  }

  private CompletionStage<Void> release(String tenant, String id) {
    return ask(tenant(tenant), (ActorRef<StatusReply<org.apache.pekko.Done>> r) -> new TenantEntity.Release(id, r),
            askTimeout, null)
        .thenApply(x -> (Void) null);
  }

  private EntityRef<SandboxEntity.Command> sandbox(String id) {
    return sharding.entityRefFor(SandboxEntity.ENTITY_KEY, id);
  }

  private EntityRef<TenantEntity.Command> tenant(String tenant) {
    return sharding.entityRefFor(TenantEntity.ENTITY_KEY, tenant);
  }

  /**
   * Asks an entity that answers with a StatusReply; error texts become {@link SandboxError}s,
   * of {@code errorKind} when given (tenant refusals are quota errors), timeouts UNAVAILABLE.
   */
  private <M, R> CompletionStage<R> ask(EntityRef<M> ref, java.util.function.Function<ActorRef<StatusReply<R>>, M> msg,
      Duration timeout, SandboxError.Kind errorKind) {
    return ref.<StatusReply<R>>ask(msg::apply, timeout)
        .handle((reply, err) -> {
          if (err != null) throw new CompletionException(unavailable(err));
          if (reply.isError()) {
            String text = reply.getError().getMessage();
            throw new CompletionException(errorKind != null ? new SandboxError(errorKind, text) : SandboxError.fromReplyText(text));
          }
          return reply.getValue();
        });
  }

  private <M, R> CompletionStage<R> ask(EntityRef<M> ref, java.util.function.Function<ActorRef<R>, M> msg) {
    return ref.<R>ask(msg::apply, askTimeout).exceptionally(err -> {
      throw new CompletionException(unavailable(err));
    });
  }

  private static SandboxError unavailable(Throwable err) {
    Throwable t = err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
    String why = t instanceof TimeoutException ? "the cluster did not answer in time" : t.getMessage();
    return new SandboxError(SandboxError.Kind.UNAVAILABLE, why + "; the request may be retried");
  }

  /** The SandboxError inside a failed stage. */
  public static SandboxError unwrap(Throwable err) {
    Throwable t = err;
    while ((t instanceof CompletionException || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null) {
      t = t.getCause();
    }
    if (t instanceof SandboxError e) return e;
    if (t instanceof TimeoutException) return unavailable(t);
    return new SandboxError(SandboxError.Kind.INTERNAL, String.valueOf(t.getMessage()));
  }
}
