#include "kvq_files/text_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kvq_files/errors.hpp"

namespace kvq::host {
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Closes the descriptor on every path out.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

std::string read_text_file(const std::filesystem::path& file, const std::string& what,
                           int64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the type check
  // below then refuses it. The check is on the opened descriptor, so the
  // file cannot be swapped between the check and the read.
  const Fd f{open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (f.fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw Error(fmt::format("{} {}: no such file", what, file.string()));
    if (err == ELOOP)
      throw Error(fmt::format("{} {}: too many levels of symbolic links (a link loop?)", what,
                              file.string()));
    throw Error(fmt::format("{} {}: cannot open: {}", what, file.string(), std::strerror(err)));
  }
  struct stat st {};
  if (fstat(f.fd, &st) != 0)
    throw Error(fmt::format("{} {}: cannot stat: {}", what, file.string(), std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw Error(
        fmt::format("{} {}: is {}, not a regular file", what, file.string(), kind_of(st.st_mode)));
  if (st.st_size > max_bytes)
    throw Error(fmt::format("{} {}: {} bytes, more than the {} bytes a {} may have", what,
                            file.string(), static_cast<int64_t>(st.st_size), max_bytes, what));
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = read(f.fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw Error(
          fmt::format("{} {}: reading failed: {}", what, file.string(), std::strerror(errno)));
    if (n == 0) break;  // shrank while reading: take what is there
    done += static_cast<size_t>(n);
  }
  text.resize(done);
  return text;
}

}  // namespace kvq::host
