import gzip, numpy as np, os, sys
from PIL import Image
root='/usr/share/datasets/fashion-mnist'
def idx(p):
    with gzip.open(p,'rb') as f: data=f.read()
    nd=data[3]; dims=[int.from_bytes(data[4+4*i:8+4*i],'big') for i in range(nd)]
    return np.frombuffer(data,dtype=np.uint8,offset=4+4*nd).reshape(dims)
X=idx(f'{root}/t10k-images-idx3-ubyte.gz'); y=idx(f'{root}/t10k-labels-idx1-ubyte.gz')
names=['t-shirt_top','trouser','pullover','dress','coat','sandal','shirt','sneaker','bag','ankle_boot']
out=sys.argv[1]; per=int(sys.argv[2])
rng=np.random.default_rng(0)
for c,n in enumerate(names):
    idxs=np.flatnonzero(y==c); idxs=np.sort(rng.choice(idxs,per,replace=False))
    os.makedirs(f'{out}/{n}',exist_ok=True)
    for i in idxs: Image.fromarray(X[i]).save(f'{out}/{n}/t10k_{i:05d}.png', optimize=True)
