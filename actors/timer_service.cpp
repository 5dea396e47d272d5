// aico engine: the process-wide timer thread (see timer_service.hpp).
#include "actors/timer_service.hpp"

#include <pthread.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "caf/detail/test_actor_clock.hpp"

#include "src/core/timer_queue.hpp"

namespace aico {

namespace {

struct timer_entry {
  caf::actor_addr to;
  caf::message msg;
};

class timer_thread {
public:
  timer_thread() = default;
  timer_thread(const timer_thread&) = delete;
  timer_thread& operator=(const timer_thread&) = delete;

  ~timer_thread() {
    {
      std::lock_guard<std::mutex> g{mx_};
      stop_ = true;
      queue_.clear();
    }
    cv_.notify_one();
    if (th_.joinable())
      th_.join();
  }

  void add(caf::actor_clock::time_point t, timer_entry e) {
    bool wake;
    {
      std::lock_guard<std::mutex> g{mx_};
      if (stop_)
        return;
      if (!th_.joinable())
        th_ = std::thread([this] { run(); });
      wake = queue_.add(t, std::move(e));
    }
    if (wake)
      cv_.notify_one();
  }

private:
  void run() {
    pthread_setname_np(pthread_self(), "aico.timer");
    std::unique_lock<std::mutex> lk{mx_};
    while (!stop_) {
      auto next = queue_.next();
      if (!next)
        cv_.wait(lk);
      else if (std::chrono::steady_clock::now() < *next)
        cv_.wait_until(lk, *next);
      if (stop_)
        break;
      auto due = queue_.take_due(std::chrono::steady_clock::now());
      if (due.empty())
        continue;
      lk.unlock();
      for (auto& e : due)
        deliver(e);
      due.clear(); // (releases the weak references outside the lock too)
      lk.lock();
    }
  }

  static void deliver(timer_entry& e) noexcept {
    try {
      if (auto hdl = caf::actor_cast<caf::strong_actor_ptr>(e.to))
        hdl->enqueue(caf::make_mailbox_element(nullptr, caf::make_message_id(),
                                               {}, std::move(e.msg)),
                     nullptr);
    } catch (...) {
      // out of memory: the timer is lost, as it would be on CAF's clock
    }
  }

  std::mutex mx_;
  std::condition_variable cv_;
  timer_queue<timer_entry, caf::actor_clock::time_point> queue_;
  bool stop_ = false;
  std::thread th_;
};

timer_thread& the_timer_thread() {
  static timer_thread t;
  return t;
}

} // namespace

bool on_virtual_clock(caf::actor_system& sys) {
  return dynamic_cast<caf::detail::test_actor_clock*>(&sys.clock()) != nullptr;
}

void schedule_on_timer_thread(caf::actor_clock::time_point t,
                              const caf::actor_addr& to, caf::message msg) {
  the_timer_thread().add(t, timer_entry{to, std::move(msg)});
}

} // namespace aico
