#pragma once

namespace portway {

template <typename T>
class IntrusiveList;

// The links an element of an IntrusiveList<T> carries: T derives from
// IntrusiveListNode<T>. An element is in at most one such list at a time.
template <typename T>
class IntrusiveListNode {
 protected:
  IntrusiveListNode() = default;
  ~IntrusiveListNode() = default;

 private:
  friend class IntrusiveList<T>;
  T* prev_ = nullptr;
  T* next_ = nullptr;
};

// A doubly linked list whose elements carry their own links: adding and
// removing allocate nothing and cost O(1), and the list costs an element
// two pointers (a std::map node per element costs 64 bytes of heap, which
// every idle connection would pay). The list does not own its elements.
template <typename T>
class IntrusiveList {
 public:
  IntrusiveList() = default;
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_ == nullptr; }
  T* front() const { return head_; }
  static T* Next(const T* item) { return Node(item)->next_; }

  // Whether `item` is linked: since an element is in at most one list of
  // T at a time, whether it is in this one for an owner with one list.
  bool Contains(const T* item) const { return Node(item)->prev_ != nullptr || head_ == item; }

  void PushFront(T* item) {
    Node(item)->prev_ = nullptr;
    Node(item)->next_ = head_;
    if (head_ != nullptr) Node(head_)->prev_ = item;
    head_ = item;
  }

  // `item` must be in this list.
  void Remove(T* item) {
    IntrusiveListNode<T>* node = Node(item);
    if (node->prev_ != nullptr) {
      Node(node->prev_)->next_ = node->next_;
    } else {
      head_ = node->next_;
    }
    if (node->next_ != nullptr) Node(node->next_)->prev_ = node->prev_;
    node->prev_ = nullptr;
    node->next_ = nullptr;
  }

  T* PopFront() {
    T* item = head_;
    if (item != nullptr) Remove(item);
    return item;
  }

 private:
  static IntrusiveListNode<T>* Node(T* item) { return item; }
  static const IntrusiveListNode<T>* Node(const T* item) { return item; }

  // No count: an owner that needs one keeps it (a connection manager is
  // smaller without).
  T* head_ = nullptr;
};

}  // namespace portway
