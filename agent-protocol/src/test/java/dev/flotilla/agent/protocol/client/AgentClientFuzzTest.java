package dev.flotilla.agent.protocol.client;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The host client against a hostile agent: with one call of each kind in flight, the agent side
 * of a {@link MemoryPipe} sends whatever the fuzzer makes (frames on the calls' streams and any
 * other, RESPONSE payloads that are or are not a {@code Response}, DATA past the window, raw
 * garbage), then hangs up. Whatever it sent, every call ends (with a value or an
 * {@link AgentException}, never another exception type), the connection ends without its reader
 * failing, the output sink sees no more than the window it granted, and answers that contradict
 * what was asked are refused.
 */
class AgentClientFuzzTest {

  private static final Duration DEADLINE = Duration.ofSeconds(30);
  /** Small, so that the overrun check is reachable. */
  private static final int WINDOW = 64;
  private static final int FILE_CHUNK = 512;
  private static final ClientOptions OPTIONS = new ClientOptions(FILE_CHUNK + 4096, WINDOW, FILE_CHUNK);
  private static final long OUTPUT_OFFSET = 1000;

  @FuzzTest(maxDuration = "10s")
  void responses(FuzzedDataProvider data) throws Exception {
    MemoryPipe toClient = new MemoryPipe(1 << 20);
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    FramedAgentClient client = new FramedAgentClient(toClient.input(), toAgent.output(), "fuzz-agent", OPTIONS);
    AtomicLong bytesHeld = new AtomicLong();
    List<Throwable> sinkErrors = new ArrayList<>();
    OutputSink sink = new OutputSink() {
      @Override
      public void onData(Channel channel, byte[] bytes, Runnable release) {
        bytesHeld.addAndGet(bytes.length);
        assertTrue(bytes.length <= WINDOW, "a DATA frame larger than the window reached the sink");
        release.run();
      }

      @Override
      public void onEnd(Channel channel) {}

      @Override
      public void onError(Throwable error) {
        synchronized (sinkErrors) {
          sinkErrors.add(error);
        }
      }
    };
    // Stream ids are allocated from 1 in this order: the fuzzer answers them by number.
    Map<String, CompletableFuture<?>> calls = new LinkedHashMap<>();
    calls.put("handshake", client.handshake("sb-0000000000000001", 1, Duration.ofSeconds(10), DEADLINE));
    calls.put("exec", client.exec(ExecRequest.of("e", "true"), sink, DEADLINE));
    calls.put("wait", client.waitProcess("e", DEADLINE));
    calls.put("signal", client.signalProcess("e", 15, DEADLINE));
    calls.put("stats", client.stats(DEADLINE));
    calls.put("ping", client.ping(DEADLINE));
    calls.put("readFileChunk", client.readFileChunk("/f", 0, FILE_CHUNK, DEADLINE));
    calls.put("readOutput", client.readOutput("d", OUTPUT_OFFSET, FILE_CHUNK, Duration.ZERO, DEADLINE));
    calls.put("writeStdin", client.writeStdin("e", new byte[] {1}, DEADLINE));
    calls.put("closeStdin", client.closeStdin("e", DEADLINE));
    calls.put("shutdown", client.shutdown(Duration.ZERO, false, DEADLINE));
    // Streams 13 on: the file system calls, and a watch whose stream takes DATA like an exec's.
    calls.put("listDir", client.listDir("/d", 2, 10, "", DEADLINE));
    calls.put("stat", client.stat("/f", false, DEADLINE));
    calls.put("makeDir", client.makeDir("/d", true, 0, DEADLINE));
    calls.put("remove", client.remove("/d", true, DEADLINE));
    calls.put("rename", client.rename("/a", "/b", false, DEADLINE));
    List<FsEvent> events = new ArrayList<>();
    calls.put("watchDir", client.watchDir("/d", true, batch -> {
      synchronized (events) {
        events.addAll(batch);
      }
    }, DEADLINE));

    OutputStream agent = toClient.output();
    try {
      while (data.remainingBytes() > 0) {
        agent.write(nextChunk(data));
      }
    } catch (IOException e) {
      // the client hung up on us (a protocol error): what it had is what it gets
    }
    agent.close();

    try {
      client.closed().get(10, TimeUnit.SECONDS);
    } catch (TimeoutException e) {
      fail("the client did not notice the agent's hang-up within 10 s");
    }
    for (var call : calls.entrySet()) {
      Object value;
      try {
        value = call.getValue().get(10, TimeUnit.SECONDS);
      } catch (TimeoutException e) {
        fail(call.getKey() + " still pending 10 s after its connection closed");
        return;
      } catch (ExecutionException e) {
        Throwable c = unwrap(e);
        assertTrue(c instanceof AgentException, call.getKey() + " failed with " + c + ", not an AgentException");
        Throwable lostCause = c.getCause();
        assertTrue(lostCause == null || lostCause instanceof IOException,
            call.getKey() + ": the connection ended with " + lostCause + " (its reader failed)");
        continue;
      }
      if (value instanceof OutputRead r) {
        assertTrue(r.offset() >= OUTPUT_OFFSET, "readOutput at " + OUTPUT_OFFSET + " answered offset " + r.offset()
            + ": output before the asked offset would be taken as new");
      }
      if (value instanceof FileChunk c) {
        assertTrue(c.data().length <= FILE_CHUNK, "readFileChunk of at most " + FILE_CHUNK + " bytes returned "
            + c.data().length);
      }
    }
    synchronized (sinkErrors) {
      for (Throwable t : sinkErrors) {
        assertTrue(t instanceof AgentException, "the sink's error is an AgentException, not " + t);
      }
    }
    client.close();
  }

  /** One frame (mostly well-formed, so the fuzzer gets past the header quickly) or raw bytes. */
  private static byte[] nextChunk(FuzzedDataProvider data) {
    int form = data.consumeInt(0, 7);
    if (form == 0) return data.consumeBytes(data.consumeInt(0, 64));
    int streamId = data.consumeInt(0, 20);
    int type = form <= 4 ? 2 /* RESPONSE */ : form == 5 ? 3 /* DATA */ : data.consumeInt(0, 6);
    int flags = data.consumeInt(0, 255);
    byte[] payload;
    if (type == 2 && data.consumeBoolean()) {
      // A Response with kind field 1..13 wrapping arbitrary bytes: reaches every translation.
      payload = response(data.consumeInt(1, 21), data.consumeBytes(data.consumeInt(0, 96)));
    } else if (type == 4 && data.consumeBoolean()) {
      payload = ByteBuffer.allocate(4).putInt(data.consumeInt()).array();
    } else {
      payload = data.consumeBytes(data.consumeInt(0, 160));
    }
    ByteBuffer b = ByteBuffer.allocate(Frame.HEADER_SIZE + payload.length);
    b.putInt(payload.length).putInt(streamId).put((byte) type).put((byte) flags).put(payload);
    return b.array();
  }

  private static byte[] response(int field, byte[] message) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    varint(out, (field << 3) | 2);
    varint(out, message.length);
    out.writeBytes(message);
    return out.toByteArray();
  }

  private static void varint(ByteArrayOutputStream out, int v) {
    while ((v & ~0x7F) != 0) {
      out.write((v & 0x7F) | 0x80);
      v >>>= 7;
    }
    out.write(v);
  }

  private static Throwable unwrap(Throwable t) {
    while ((t instanceof ExecutionException || t instanceof CompletionException) && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }
}
