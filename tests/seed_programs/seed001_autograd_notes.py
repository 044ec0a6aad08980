# Seed 001: torch.autograd notes (Chinese). The notes show interactive expressions
# (``b.requires_grad # True``); here each is printed. Lines the notes mark as raising
# are wrapped in try/except. Left out: the model-freezing sketch (it refers to an
# undefined ``model``) and the torch.autograd.profiler section (a later issue).
import torch

import numpy as np

rs = np.random.RandomState(1)

# 1. requires_grad
a=torch.tensor([1.], requires_grad=True)
b=a+1
print(b.requires_grad) # True

# 3. torch.autograd.backward
a = torch.tensor([1.,2.], requires_grad=True)
b = torch.tensor([1.,2.], requires_grad=True)
c = 2*a+3*b+1
grad = torch.tensor([1.,1.])
torch.autograd.backward(c, grad_tensors=grad)
print(a.grad)
# tensor([2., 2.])
print(b.grad)
# tensor([3., 3.])
print(c.grad) # 非叶节点不储存梯度
try:
    torch.autograd.backward(c, grad_tensors=grad) # 继续执行报错
except RuntimeError as e:
    print(type(e).__name__, "second time" in str(e))

# 4. torch.autograd.grad
a = torch.tensor([1.,2.], requires_grad=True)
b = torch.tensor([1.,2.], requires_grad=True)
c = 2*a+3*b+1
d = 2*c+1
grad = torch.tensor([1.,1.])
print(torch.autograd.grad(d,(a,b,c),grad)) # 非叶节点也能输出梯度!
# (tensor([4., 4.]), tensor([6., 6.]), tensor([2., 2.]))
print((a.grad, b.grad))
# (None, None) # 该函数结果不储存在.grad中
try:
    torch.autograd.grad(d,a,grad) # 错误，一次前向只能操作一次
except RuntimeError as e:
    print(type(e).__name__, "second time" in str(e))

# 5. 冻结梯度
## 方案一
x = torch.tensor([1.], requires_grad=True)
with torch.no_grad():
	y = x * 2
print(y.requires_grad) # False
## 方案二
@torch.no_grad()
def doubler(x):
	return x * 2
z = doubler(x)
print(z.requires_grad) # False
## 方案三
flag = False # 如果这里为True则不阻止梯度传递
with torch.set_grad_enabled(flag):
	y = x * 2
print(y.requires_grad) # False
## 方案四
torch.set_grad_enabled(False) # 如果是True则不阻止梯度传递
y = x * 2
print(y.requires_grad) # False
torch.set_grad_enabled(True)  # (added: the rest of the notes needs grad mode back on)

# 7. torch.Tensor.detach
a = torch.tensor([1.,2.], requires_grad=True)
b = torch.tensor([1.,2.], requires_grad=True)
c = 2*a+3*b+1
cc = c.detach()
print(cc.requires_grad) # False
print(cc)  # tensor([ 6., 11.])

# 8. torch.Tensor.detach_
a = torch.tensor([1.,2.], requires_grad=True)
b = torch.tensor([1.,2.], requires_grad=True)
c = 2*a+3*b+1
cc = c.detach_()
print(cc is c) # True # 这是一个in-place操作
print(cc.requires_grad) # False
print(cc)  # tensor([ 6., 11.])

# 10. torch.Tensor.is_leaf
a = torch.tensor([1.,2.], requires_grad=True)
b = torch.tensor([1.,2.], requires_grad=True)
c = 2*a+3*b+1
print(c.is_leaf) # False
print(a.is_leaf) # True

# 11. torch.Tensor.register_hook
def hook_func(grad): # 钩子函数的参数固定为grad
	print(grad)
a = torch.tensor([1.,2.], requires_grad=True)
b = torch.tensor([1.,2.], requires_grad=True)
c = 2*a+3*b+1
d = 2*c+1
hook = c.register_hook(hook_func) # 某张量注册一个钩子函数
d.backward(torch.tensor([1.,1.]))
# tensor([2., 2.]) # 钩子函数被执行
hook.remove() # 如果保留计算图，可以用这个方法解除钩子

# 12. torch.Tensor.retain_grad
a = torch.tensor([1.,2.], requires_grad=True)
b = torch.tensor([1.,2.], requires_grad=True)
c = 2*a+3*b+1
d = 2*c+1
c.retain_grad()
d.backward(torch.tensor([1.,1.]))
print(c.grad) # tensor([2., 2.])

# 13. torch.autograd.Function
class Func(torch.autograd.Function):

	@staticmethod
	def forward(ctx, x, y):
		# 输入都是torch.Tensor
		# ctx是固定的，后面参数自己设计
		expx = torch.exp(x) 
		expy = torch.exp(y)
		# 可以不用torch内置操作,自己调DLL
		result = 3*x+2*y+expx+expy
		# 为反向传播保留输出
		ctx.save_for_backward(expx, expy)
		return result
		
	@staticmethod
	def backward(ctx, grad_output):
		# ctx, grad_output 都是固定的
		# grad_output 为上级传下来的梯度张量
		expx, expy,  = ctx.saved_tensors
		grad_x = grad_output*(3+expx)
		grad_y = grad_output*(2+expy)
		return grad_x, grad_y

myfunc = Func.apply # 使用别名实例化

# 下面进行测试
x = torch.tensor([1.,2.], requires_grad=True)
y = torch.tensor([3.,4.], requires_grad=True)
z = myfunc(x,y)
print(z)
z.backward(torch.tensor([1.,1.]))
print((x.grad, y.grad))
# (tensor([ 5.7183, 10.3891]),
#  tensor([22.0855, 56.5981]))

# 14. torch.autograd.gradcheck
iptx = torch.tensor(rs.randn(20).astype(np.float32), requires_grad=True).double()  # torch.randn(20, requires_grad=True).double()
ipty = torch.tensor(rs.randn(20).astype(np.float32), requires_grad=True).double()  # torch.randn(20, requires_grad=True).double()
ipt = iptx,ipty
# 必须是 float64 类型的输入, requires_grad必须为True
test = torch.autograd.gradcheck(myfunc, ipt, atol=1e-4)
print(test)  #　没问题的话输出True

# 15. torch.autograd.gradgradcheck
test = torch.autograd.gradcheck(myfunc, ipt) # 上述函数无法通过检测
print(test)  #　没问题的话输出True
