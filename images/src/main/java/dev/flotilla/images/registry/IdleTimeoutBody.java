package dev.flotilla.images.registry;

import java.io.IOException;
import java.io.InputStream;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Flow;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A response body as an InputStream that gives up when no bytes arrive for {@code idle}. The
 * request timeout of {@link java.net.http.HttpClient} ends at the headers; without this a
 * registry that stalls mid-blob would hold a pull (and everyone joined to it) forever.
 * Back-pressure: one list of buffers is requested at a time.
 */
final class IdleTimeoutBody extends InputStream implements HttpResponse.BodySubscriber<InputStream> {
  private static final Object END = new Object();

  private final Duration idle;
  private final BlockingQueue<Object> queue = new LinkedBlockingQueue<>();
  private volatile Flow.Subscription subscription;
  private Iterator<ByteBuffer> pending;
  private ByteBuffer current;
  private boolean done;

  IdleTimeoutBody(Duration idle) {
    this.idle = idle;
  }

  static HttpResponse.BodyHandler<InputStream> handler(Duration idle) {
    return info -> new IdleTimeoutBody(idle);
  }

  @Override
  public CompletionStage<InputStream> getBody() {
    return CompletableFuture.completedStage(this);
  }

  @Override
  public void onSubscribe(Flow.Subscription s) {
    subscription = s;
    s.request(1);
  }

  @Override
  public void onNext(List<ByteBuffer> item) {
    queue.add(item);
  }

  @Override
  public void onError(Throwable t) {
    queue.add(t);
  }

  @Override
  public void onComplete() {
    queue.add(END);
  }

  @Override
  public int read() throws IOException {
    byte[] one = new byte[1];
    int r = read(one, 0, 1);
    return r < 0 ? -1 : one[0] & 0xff;
  }

  @Override
  public int read(byte[] b, int off, int len) throws IOException {
    if (len == 0) {
      return 0;
    }
    while (current == null || !current.hasRemaining()) {
      if (pending != null && pending.hasNext()) {
        current = pending.next();
        continue;
      }
      if (done) {
        return -1;
      }
      Object next;
      try {
        next = queue.poll(idle.toMillis(), TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        close();
        throw new IOException("interrupted while reading a registry response", e);
      }
      if (next == null) {
        close();
        throw new HttpTimeoutException("no data from the registry for " + idle.toMillis() + " ms");
      }
      if (next == END) {
        done = true;
      } else if (next instanceof Throwable t) {
        done = true;
        throw t instanceof IOException io ? io : new IOException(t);
      } else {
        @SuppressWarnings("unchecked")
        List<ByteBuffer> buffers = (List<ByteBuffer>) next;
        pending = buffers.iterator();
        subscription.request(1);
      }
    }
    int n = Math.min(len, current.remaining());
    current.get(b, off, n);
    return n;
  }

  @Override
  public void close() {
    done = true;
    Flow.Subscription s = subscription;
    if (s != null) {
      s.cancel();
    }
  }
}
